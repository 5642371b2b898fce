package watchcodec

import (
	"bytes"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// countingPool hands out buffers and counts those not given back yet.
type countingPool struct{ out atomic.Int64 }

func (p *countingPool) Get(n int) *[]byte {
	p.out.Add(1)
	// Large enough that mem.NewBuffer counts references (it does not
	// for buffers under its pooling threshold).
	b := make([]byte, n, max(n, 4096))
	return &b
}

func (p *countingPool) Put(*[]byte) { p.out.Add(-1) }

// split cuts b into pooled buffers at random points, as frames arrive.
func split(r *rand.Rand, b []byte, pool mem.BufferPool) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 1+r.IntN(40))
		if r.IntN(4) == 0 {
			n = min(len(b), 1+r.IntN(20000))
		}
		buf := pool.Get(n)
		copy(*buf, b[:n])
		out = append(out, mem.NewBuffer(buf, pool))
		b = b[n:]
	}
	return out
}

func messages(r *rand.Rand) []*pb.WatchJobOutputResponse {
	data := make([]byte, 100<<10)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	return []*pb.WatchJobOutputResponse{
		{},
		{Stream: pb.Stream_STREAM_STDOUT, Offset: 0, Data: []byte("x")},
		{Stream: pb.Stream_STREAM_STDERR, Offset: math.MaxInt64, Data: data},
		{Stream: pb.Stream_STREAM_STDOUT, Offset: 12345, Data: data[:4097]},
		{Offset: 77, DroppedBytes: 1 << 40},
		{Offset: 1 << 30, Job: &pb.Job{Name: "jobs/abc", Status: &pb.JobStatus{State: pb.State_STATE_COMPLETED, OutputBytes: 1 << 30}}},
		{Stream: pb.Stream(-3), Offset: -1, Data: data[:10]}, // values no server sends still round-trip
	}
}

// TestMarshalIsProto: a Frame encodes byte for byte as proto-go encodes the
// WatchJobOutputResponse it stands for, its data buffers split anyhow, and
// every buffer reference Marshal takes is the transport's to free.
func TestMarshalIsProto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pool := &countingPool{}
	for i, msg := range messages(r) {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		f := &Frame{Stream: msg.Stream, Offset: msg.Offset, Dropped: msg.DroppedBytes, Job: msg.Job, Data: split(r, msg.Data, pool)}
		got, err := Codec{}.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if b := got.Materialize(); !bytes.Equal(b, want) {
			t.Errorf("message %d: frame encodes to %d bytes, differing from proto's %d", i, len(b), len(want))
		}
		got.Free()
		f.Release()
		if n := pool.out.Load(); n != 0 {
			t.Fatalf("message %d: %d buffers not freed", i, n)
		}
	}
}

// TestUnmarshal: what proto-go encodes (with unknown fields in between, and
// fields repeated: the last wins) decodes into the same Frame however the
// bytes are split into buffers; the data is views of those buffers, which
// go back to the pool once the frame is released.
func TestUnmarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	pool := &countingPool{}
	for i, msg := range messages(r) {
		b, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		// An unknown field of each wire type, and an earlier data field
		// the later one replaces.
		var pre []byte
		pre = protowire.AppendTag(pre, 99, protowire.VarintType)
		pre = protowire.AppendVarint(pre, 300)
		pre = protowire.AppendTag(pre, 98, protowire.Fixed64Type)
		pre = protowire.AppendFixed64(pre, 1)
		pre = protowire.AppendTag(pre, 97, protowire.Fixed32Type)
		pre = protowire.AppendFixed32(pre, 1)
		pre = protowire.AppendTag(pre, 96, protowire.BytesType)
		pre = protowire.AppendBytes(pre, []byte("unknown"))
		pre = protowire.AppendTag(pre, fieldData, protowire.BytesType)
		pre = protowire.AppendBytes(pre, []byte("replaced"))
		if len(msg.Data) == 0 {
			pre = nil // an earlier data field would be the message's data
		}
		for range 5 {
			in := split(r, append(pre, b...), pool)
			var f Frame
			if err := (Codec{}).Unmarshal(in, &f); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			in.Free() // gRPC frees its references once Unmarshal returned
			if f.Stream != msg.Stream || f.Offset != msg.Offset || f.Dropped != msg.DroppedBytes || !proto.Equal(f.Job, msg.Job) {
				t.Errorf("message %d: decoded %v %d %d %v", i, f.Stream, f.Offset, f.Dropped, f.Job)
			}
			if got := f.Data.Materialize(); !bytes.Equal(got, msg.Data) && len(got)+len(msg.Data) > 0 {
				t.Errorf("message %d: data of %d bytes differs from the %d sent", i, len(got), len(msg.Data))
			}
			f.Release()
			if n := pool.out.Load(); n != 0 {
				t.Fatalf("message %d: %d buffers not freed", i, n)
			}
		}
	}
}

// TestUnmarshalMalformed: a message cut anywhere, or with a length past
// its end, is an error (never a panic), and leaves no buffer held.
func TestUnmarshalMalformed(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pool := &countingPool{}
	msg := &pb.WatchJobOutputResponse{Stream: pb.Stream_STREAM_STDOUT, Offset: 1 << 40, Data: bytes.Repeat([]byte("ab"), 3000),
		Job: &pb.Job{Name: "jobs/x"}}
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	bad := [][]byte{
		{0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f},                                     // data longer than the message
		{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // an 11-byte varint
		{0x0b},       // a group
		{0x00, 0x01}, // field 0
	}
	for n := 1; n < len(b); n += 1 + n/8 {
		// Cut at n: an error unless n is exactly a field boundary.
		var f Frame
		in := split(r, b[:n], pool)
		err := (Codec{}).Unmarshal(in, &f)
		in.Free()
		f.Release()
		_ = err
	}
	for i, m := range bad {
		var f Frame
		in := split(r, m, pool)
		if err := (Codec{}).Unmarshal(in, &f); err == nil {
			t.Errorf("malformed message %d accepted", i)
		}
		in.Free()
		f.Release()
	}
	if n := pool.out.Load(); n != 0 {
		t.Fatalf("%d buffers not freed", n)
	}
}

// TestOtherMessages: anything but a Frame goes through grpc-go's proto
// codec, both ways.
func TestOtherMessages(t *testing.T) {
	req := &pb.WatchJobOutputRequest{Name: "jobs/abc", Offset: 42}
	b, err := Codec{}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	got := new(pb.WatchJobOutputRequest)
	if err := (Codec{}).Unmarshal(b, got); err != nil {
		t.Fatal(err)
	}
	b.Free()
	if !proto.Equal(got, req) {
		t.Errorf("round trip: %v, want %v", got, req)
	}
	if (Codec{}).Name() != "proto" {
		t.Errorf("name %q: the content-subtype must stay proto", Codec{}.Name())
	}
}

// FuzzUnmarshal: no input panics or leaks a buffer reference.
func FuzzUnmarshal(f *testing.F) {
	for _, m := range messages(rand.New(rand.NewPCG(7, 8))) {
		b, _ := proto.Marshal(m)
		f.Add(b, uint64(1))
	}
	f.Fuzz(func(t *testing.T, b []byte, seed uint64) {
		pool := &countingPool{}
		in := split(rand.New(rand.NewPCG(seed, seed)), b, pool)
		var fr Frame
		err := (Codec{}).Unmarshal(in, &fr)
		in.Free()
		if err == nil {
			// What decodes must agree with proto-go.
			var msg pb.WatchJobOutputResponse
			if perr := proto.Unmarshal(b, &msg); perr == nil && !bytes.Equal(fr.Data.Materialize(), msg.Data) {
				t.Errorf("data differs from proto-go's")
			}
		}
		fr.Release()
		if n := pool.out.Load(); n != 0 {
			t.Fatalf("%d buffers not freed", n)
		}
	})
}

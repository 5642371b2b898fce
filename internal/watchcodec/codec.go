// Package watchcodec is the gRPC codec of the output stream
// (WatchJobOutput): it moves a job's output between the server's log
// buffers, the wire and the CLI's stdout without a copy in between.
//
// grpc-go's own proto codec marshals each WatchJobOutputResponse into a new
// buffer (a copy of the data) and unmarshals it into a new []byte (another
// copy, and garbage), once per message, on each side. This codec encodes and
// decodes a Frame instead, whose data is a mem.BufferSlice: on the server the
// slices of the log's buffers go to the transport as they are (the codec
// only writes the few bytes of field tags and lengths), and on the client
// the data fields are views of the transport's receive buffers, written out
// and then freed. The bytes on the wire are exactly a WatchJobOutputResponse
// (fields in number order, as proto-go writes them), so any gRPC client
// (grpcurl, a generated stub) reads them, and every other message goes
// through grpc-go's proto codec unchanged.
//
// The codec is never registered globally (the binary is both server and
// client, and every other call keeps grpc-go's codec): the server installs
// it with grpc.ForceServerCodecV2 and the CLI asks for it per call with
// grpc.ForceCodecV2. Its Name is "proto", the content-subtype of the
// encoding it speaks.
package watchcodec

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// Frame is a WatchJobOutputResponse whose data is held in reference-counted
// buffers instead of a []byte.
type Frame struct {
	Stream  pb.Stream
	Offset  int64
	Dropped int64
	Job     *pb.Job
	// Data is the output. Whoever holds a Frame owns one reference to each
	// of Data's buffers and frees them (Release): Marshal takes references
	// of its own for the transport, and Unmarshal fills Data with views
	// of the received buffers that the caller must release.
	Data mem.BufferSlice
}

// Release frees f's data and clears f for reuse.
func (f *Frame) Release() {
	f.Data.Free()
	*f = Frame{}
}

// Codec is the CodecV2 of the output stream; its zero value is ready.
type Codec struct{}

// Name is the content-subtype of the encoding: proto.
func (Codec) Name() string { return protocodec.Name }

// protoCodec is grpc-go's proto codec, for every message but a Frame.
func protoCodec() encoding.CodecV2 {
	c := encoding.GetCodecV2(protocodec.Name)
	if c == nil {
		panic("watchcodec: grpc-go's proto codec is not registered")
	}
	return c
}

// Field numbers of WatchJobOutputResponse (foreman.proto).
const (
	fieldStream  = 1
	fieldOffset  = 2
	fieldData    = 3
	fieldDropped = 4
	fieldJob     = 5
)

// Marshal encodes a *Frame as a WatchJobOutputResponse, its data not
// copied; anything else goes to the proto codec.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*Frame)
	if !ok {
		return protoCodec().Marshal(v)
	}
	var head []byte
	if f.Stream != 0 {
		head = protowire.AppendTag(head, fieldStream, protowire.VarintType)
		head = protowire.AppendVarint(head, uint64(f.Stream))
	}
	if f.Offset != 0 {
		head = protowire.AppendTag(head, fieldOffset, protowire.VarintType)
		head = protowire.AppendVarint(head, uint64(f.Offset))
	}
	n := f.Data.Len()
	if n > 0 {
		head = protowire.AppendTag(head, fieldData, protowire.BytesType)
		head = protowire.AppendVarint(head, uint64(n))
	}
	out := make(mem.BufferSlice, 0, len(f.Data)+2)
	out = append(out, mem.SliceBuffer(head))
	if n > 0 {
		f.Data.Ref()
		out = append(out, f.Data...)
	}
	var tail []byte
	if f.Dropped != 0 {
		tail = protowire.AppendTag(tail, fieldDropped, protowire.VarintType)
		tail = protowire.AppendVarint(tail, uint64(f.Dropped))
	}
	if f.Job != nil {
		job, err := proto.Marshal(f.Job)
		if err != nil {
			out.Free()
			return nil, err
		}
		tail = protowire.AppendTag(tail, fieldJob, protowire.BytesType)
		tail = protowire.AppendBytes(tail, job)
	}
	if len(tail) > 0 {
		out = append(out, mem.SliceBuffer(tail))
	}
	return out, nil
}

// Unmarshal decodes a WatchJobOutputResponse into a *Frame (which must be
// empty: released), its data as views of data's buffers; anything else goes
// to the proto codec.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*Frame)
	if !ok {
		return protoCodec().Unmarshal(data, v)
	}
	if err := f.decode(data); err != nil {
		f.Release()
		return fmt.Errorf("WatchJobOutputResponse: %w", err)
	}
	return nil
}

var errMalformed = errors.New("malformed message")

// decode parses the message in data field by field. Later fields of one
// number replace earlier ones (proto's rule for singular fields), unknown
// fields are skipped.
func (f *Frame) decode(data mem.BufferSlice) error {
	r := reader{bufs: data}
	for r.more() {
		tag, err := r.varint()
		if err != nil {
			return err
		}
		num, typ := protowire.Number(tag>>3), protowire.Type(tag&7)
		if num <= 0 {
			return errMalformed
		}
		switch {
		case num == fieldStream && typ == protowire.VarintType:
			v, err := r.varint()
			if err != nil {
				return err
			}
			f.Stream = pb.Stream(int32(v))
		case num == fieldOffset && typ == protowire.VarintType:
			v, err := r.varint()
			if err != nil {
				return err
			}
			f.Offset = int64(v)
		case num == fieldDropped && typ == protowire.VarintType:
			v, err := r.varint()
			if err != nil {
				return err
			}
			f.Dropped = int64(v)
		case num == fieldData && typ == protowire.BytesType:
			n, err := r.length()
			if err != nil {
				return err
			}
			f.Data.Free()
			f.Data = r.views(n)
		case num == fieldJob && typ == protowire.BytesType:
			n, err := r.length()
			if err != nil {
				return err
			}
			b := make([]byte, n)
			r.copyTo(b)
			job := new(pb.Job)
			if err := proto.Unmarshal(b, job); err != nil {
				return err
			}
			f.Job = job
		default:
			if err := r.skip(typ); err != nil {
				return err
			}
		}
	}
	return nil
}

// reader walks a BufferSlice without copying it.
type reader struct {
	bufs mem.BufferSlice
	i    int // the buffer being read
	pos  int // the next byte in bufs[i]
	left int // bytes not read yet; set by more
	init bool
}

func (r *reader) more() bool {
	if !r.init {
		r.left, r.init = r.bufs.Len(), true
	}
	return r.left > 0
}

func (r *reader) next() (byte, bool) {
	for r.i < len(r.bufs) {
		b := r.bufs[r.i].ReadOnlyData()
		if r.pos < len(b) {
			c := b[r.pos]
			r.pos++
			r.left--
			return c, true
		}
		r.i, r.pos = r.i+1, 0
	}
	return 0, false
}

func (r *reader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		c, ok := r.next()
		if !ok {
			return 0, errMalformed
		}
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errMalformed
}

// length reads a length prefix and checks that that many bytes follow.
func (r *reader) length() (int, error) {
	n, err := r.varint()
	if err != nil {
		return 0, err
	}
	if n > uint64(r.left) {
		return 0, errMalformed
	}
	return int(n), nil
}

// views returns the next n bytes (n <= r.left) as views sharing the
// buffers' references.
func (r *reader) views(n int) mem.BufferSlice {
	var out mem.BufferSlice
	for n > 0 {
		b := r.bufs[r.i]
		if r.pos == b.Len() {
			r.i, r.pos = r.i+1, 0
			continue
		}
		k := min(n, b.Len()-r.pos)
		out = append(out, b.Slice(r.pos, r.pos+k))
		r.pos += k
		r.left -= k
		n -= k
	}
	return out
}

// copyTo copies the next len(dst) bytes (at most r.left) into dst.
func (r *reader) copyTo(dst []byte) {
	for len(dst) > 0 {
		b := r.bufs[r.i].ReadOnlyData()
		if r.pos == len(b) {
			r.i, r.pos = r.i+1, 0
			continue
		}
		k := copy(dst, b[r.pos:])
		r.pos += k
		r.left -= k
		dst = dst[k:]
	}
}

// skip passes over a field of wire type typ.
func (r *reader) skip(typ protowire.Type) error {
	var n int
	switch typ {
	case protowire.VarintType:
		_, err := r.varint()
		return err
	case protowire.Fixed32Type:
		n = 4
	case protowire.Fixed64Type:
		n = 8
	case protowire.BytesType:
		var err error
		if n, err = r.length(); err != nil {
			return err
		}
	default: // groups, which this message never has
		return errMalformed
	}
	if n > r.left {
		return errMalformed
	}
	for n > 0 {
		b := r.bufs[r.i].ReadOnlyData()
		k := min(n, len(b)-r.pos)
		r.pos += k
		r.left -= k
		n -= k
		if r.pos == len(b) {
			r.i, r.pos = r.i+1, 0
		}
	}
	return nil
}

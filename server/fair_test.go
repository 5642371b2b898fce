package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// Every connection of these tests goes to the test server on 127.0.0.1;
// some come from another loopback source address (127.0.0.2, ...), which
// Linux routes over lo like 127.0.0.1.

// servedWithin is how long a legitimate client may take to be served while
// an attacker holds a bound. Unloaded, it takes a few milliseconds; the
// margin is for a machine shared by many test runs (the point is "served",
// not the exact time, which the tests log).
const servedWithin = 10 * time.Second

// TestPerUserJobCap is the attack: with --max-jobs 5, alice starts
// as many jobs as she can. She stops at her own cap (a quarter of 5,
// rounded up: 2) with a message naming it and her count, bob still starts
// his, users together stop one short of 5 (the slot kept for admins), and
// the admin still starts a job; only then is the server full, for the
// admin too. A stopped job frees alice's slot.
func TestPerUserJobCap(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxJobs = 5 })
	ctx := testCtx(t)
	alice := ts.as(t, "alice", certgen.RoleUser)
	bob := ts.as(t, "bob", certgen.RoleUser)
	carol := ts.as(t, "carol", certgen.RoleUser)
	admin := ts.as(t, "root", certgen.RoleAdmin)
	start := func(c pb.ForemanClient) (string, error) {
		resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "sleep"})
		return resp.GetJob().GetName(), err
	}
	var aliceJobs []string
	for range 2 {
		name, err := start(alice)
		if err != nil {
			t.Fatalf("alice: %v", err)
		}
		aliceJobs = append(aliceJobs, name)
	}
	_, err := start(alice)
	st := wantCode(t, "alice's third job", err, codes.ResourceExhausted)
	for _, want := range []string{"alice already runs 2 jobs", "--max-jobs-per-user 2"} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("alice's refusal %q does not say %q", st.Message(), want)
		}
	}
	for i := range 2 {
		if _, err := start(bob); err != nil {
			t.Fatalf("bob's job %d while alice is at her cap: %v", i+1, err)
		}
	}
	_, err = start(carol) // 4 run: the users' share of 5 is full
	st = wantCode(t, "carol's job with 4 of 5 running", err, codes.ResourceExhausted)
	for _, want := range []string{"the server already runs 4 jobs", "--max-jobs 5 keeps 1 for admins", "carol runs 0"} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("carol's refusal %q does not say %q", st.Message(), want)
		}
	}
	adminJob, err := start(admin)
	if err != nil {
		t.Fatalf("admin while users hold their whole share: %v", err)
	}
	_, err = start(admin)
	st = wantCode(t, "admin's job with 5 of 5 running", err, codes.ResourceExhausted)
	if !strings.Contains(st.Message(), "maximum of 5 jobs") {
		t.Errorf("admin's refusal %q", st.Message())
	}
	// The admin's job counts against the users' share too: with alice's
	// stopped, 4 still run.
	if _, err := alice.StopJob(ctx, &pb.StopJobRequest{Name: aliceJobs[0]}); err != nil {
		t.Fatal(err)
	}
	_, err = start(carol)
	wantCode(t, "carol's job with 4 of 5 running, one of them the admin's", err, codes.ResourceExhausted)
	if _, err := admin.StopJob(ctx, &pb.StopJobRequest{Name: adminJob}); err != nil {
		t.Fatal(err)
	}
	if _, err := start(carol); err != nil { // 3 run: a user slot is free
		t.Fatalf("carol with 3 of 5 running: %v", err)
	}
	// What the runner was asked: admins with the whole cap and no
	// per-user bound, users with the share and their own bound.
	if q := ts.runner.lastStart().Quota; q.Total != 4 || q.PerOwner != 2 {
		t.Errorf("a user's quota %+v", q)
	}
}

// TestWatcherCapPerIdentity checks one identity cannot hold more watch
// streams than its cap, over all its connections, while another identity
// still watches, and that an ended stream frees its place.
func TestWatcherCapPerIdentity(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxWatchersPerUser = 2 })
	ctx := testCtx(t)
	alice := ts.as(t, "alice", certgen.RoleUser)
	alice2 := ts.as(t, "alice", certgen.RoleUser) // another certificate and connection, same identity
	bob := ts.as(t, "bob", certgen.RoleUser)
	job := func(c pb.ForemanClient) string {
		resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Args: []string{"hello"}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetJob().GetName()
	}
	// watch opens a stream and reads its first message, so that the server
	// counts it; it returns the stream's cancel.
	watch := func(c pb.ForemanClient, name string) (context.CancelFunc, error) {
		wctx, cancel := context.WithCancel(ctx)
		s, err := c.WatchJobOutput(wctx, &pb.WatchJobOutputRequest{Name: name})
		if err == nil {
			_, err = s.Recv()
		}
		if err != nil {
			cancel()
			return nil, err
		}
		return cancel, nil
	}
	aliceJob, bobJob := job(alice), job(bob)
	first, err := watch(alice, aliceJob)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch(alice2, aliceJob); err != nil {
		t.Fatal(err)
	}
	_, err = watch(alice2, aliceJob)
	st := wantCode(t, "alice's third watcher", err, codes.ResourceExhausted)
	for _, want := range []string{"alice already watches 2 streams", "--max-watchers-per-user 2"} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("refusal %q does not say %q", st.Message(), want)
		}
	}
	if _, err := watch(bob, bobJob); err != nil {
		t.Fatalf("bob while alice is at her cap: %v", err)
	}
	first()
	deadline := time.Now().Add(servedWithin)
	for {
		_, err := watch(alice, aliceJob)
		if err == nil {
			break
		}
		wantCode(t, "alice after ending a stream", err, codes.ResourceExhausted)
		if time.Now().After(deadline) {
			t.Fatalf("alice's ended stream still counts after %v", servedWithin)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialFrom connects to the test server from the loopback source address
// src (127.0.0.x), with a client certificate for name.
func (ts *testServer) dialFrom(t *testing.T, src, name, role string) pb.ForemanClient {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := grpc.NewClient("passthrough:///"+ts.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(ts.clientTLS(ts.client(t, name, role)))),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewForemanClient(conn)
}

// rawConns opens n idle TCP connections to the test server from src that
// never send a byte, and closes them when the test ends.
func (ts *testServer) rawConns(t *testing.T, src string, n int) []net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := range n {
		c, err := d.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatalf("idle connection %d from %s: %v", i, src, err)
		}
		conns = append(conns, c)
	}
	return conns
}

// closedWithin reports how long c took to be closed by the server (Read
// returns EOF or a reset), or fails the test after limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection from %s still open after %v", c.LocalAddr(), limit)
	}
	return time.Since(start)
}

// served checks c gets a job started and its status within servedWithin,
// and returns how long that took.
func served(t *testing.T, c pb.ForemanClient, who string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), servedWithin)
	defer cancel()
	start := time.Now()
	// Wait for ready: a connection closed under it (its handshake took
	// longer than a test's short deadline on a loaded machine) is retried
	// until ctx ends: Unavailable is a code to retry on.
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "true"}, grpc.WaitForReady(true))
	if err == nil {
		_, err = c.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: resp.GetJob().GetName()}, grpc.WaitForReady(true))
	}
	if err != nil {
		t.Fatalf("%s not served within %v: %v", who, servedWithin, err)
	}
	d := time.Since(start)
	t.Logf("%s served in %v", who, d)
	return d
}

// TestServedUnderStreamCapAndIdleConns is the attack on the
// transport: mallory holds every stream of her connection with watchers
// (a further call on it waits) and 1,000 idle TCP connections that never
// start TLS; bob, on his own connection, is still served at once.
func TestServedUnderStreamCapAndIdleConns(t *testing.T) {
	const streams, idle = 16, 1000
	ts := startServer(t, func(c *Config) {
		c.MaxStreamsPerConn = streams
		c.MaxWatchersPerUser = 2 * streams
		c.MaxConns = idle + 100
		c.MaxConnsPerIP = idle + 100
		c.HandshakeTimeout = time.Minute // the idle connections stay for the whole test
	})
	ctx := testCtx(t)
	mallory := ts.as(t, "mallory", certgen.RoleUser)
	resp, err := mallory.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Args: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range streams {
		s, err := mallory.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: resp.GetJob().GetName()})
		if err == nil {
			_, err = s.Recv()
		}
		if err != nil {
			t.Fatalf("mallory's stream %d: %v", i, err)
		}
	}
	// The connection's streams are all taken: one more call waits.
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = mallory.GetJobStatus(short, &pb.GetJobStatusRequest{Name: resp.GetJob().GetName()})
	cancel()
	wantCode(t, "mallory's call past her connection's streams", err, codes.DeadlineExceeded)

	conns := ts.rawConns(t, "127.0.0.1", idle)
	served(t, ts.as(t, "bob", certgen.RoleUser), "bob, with 1,000 idle connections and a full connection open")
	// The server still holds the idle connections: bob was not served
	// because they were dropped.
	for _, c := range []net.Conn{conns[0], conns[idle-1]} {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		var ne net.Error
		if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("an idle connection was closed before its handshake deadline: %v", err)
		}
	}
}

// TestConnCapPerIP checks a source at its cap has further connections
// closed at once, while a client from another address is served.
func TestConnCapPerIP(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.MaxConns = 64
		c.MaxConnsPerIP = 4
		c.HandshakeTimeout = time.Minute
	})
	ts.rawConns(t, "127.0.0.1", 4)
	extra := ts.rawConns(t, "127.0.0.1", 1)[0]
	if d := closedWithin(t, extra, servedWithin); d > servedWithin {
		t.Errorf("the connection past the per-IP cap took %v to close", d)
	}
	served(t, ts.dialFrom(t, "127.0.0.2", "bob", certgen.RoleUser), "bob from 127.0.0.2, with 127.0.0.1 at its cap")
}

// TestConnCapTotal fills the whole connection cap from many addresses with
// connections that never start TLS: a legitimate client waits in the
// accept queue until the handshake deadline frees slots, then is served.
// That is the bound on this attack: at most the handshake deadline.
func TestConnCapTotal(t *testing.T) {
	// Short, but long enough for bob's own handshake on a loaded machine
	// (the deadline applies to it too).
	const deadline = 2 * time.Second
	ts := startServer(t, func(c *Config) {
		c.MaxConns = 8
		c.MaxConnsPerIP = 1
		c.HandshakeTimeout = deadline
	})
	var held []net.Conn
	for i := range 8 {
		held = append(held, ts.rawConns(t, "127.0.0."+string(rune('3'+i)), 1)...)
	}
	bob := ts.dialFrom(t, "127.0.0.2", "bob", certgen.RoleUser)
	if d := served(t, bob, "bob, with every connection slot held"); d > deadline+servedWithin {
		t.Errorf("bob waited %v", d)
	}
	for _, c := range held {
		closedWithin(t, c, servedWithin)
	}
}

// TestHandshakeDeadline checks connections that never complete the TLS
// handshake, or that complete it and never speak HTTP/2, are closed
// within the handshake deadline instead of grpc-go's 120 s.
func TestHandshakeDeadline(t *testing.T) {
	// Short, but long enough for this test's own TLS handshake on a loaded
	// machine (the deadline applies to it too).
	const deadline = time.Second
	ts := startServer(t, func(c *Config) { c.HandshakeTimeout = deadline })
	silent := ts.rawConns(t, "127.0.0.1", 1)[0]
	partial := ts.rawConns(t, "127.0.0.1", 1)[0]
	if _, err := partial.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00}); err != nil { // a ClientHello's record header, then nothing
		t.Fatal(err)
	}
	tlsOnly, err := tls.Dial("tcp", ts.addr, ts.clientTLS(ts.client(t, "alice", certgen.RoleUser)))
	if err != nil {
		t.Fatal(err)
	}
	defer tlsOnly.Close()
	for what, c := range map[string]net.Conn{"silent": silent, "partial ClientHello": partial, "TLS without HTTP/2": tlsOnly} {
		d := closedWithin(t, c, deadline+servedWithin)
		t.Logf("%s connection closed after %v", what, d)
	}
	served(t, ts.as(t, "bob", certgen.RoleUser), "bob")
}

// rawH2 is an HTTP/2 connection over mutual TLS that ignores what the
// server's settings ask for: an attacker's client, not grpc-go's.
type rawH2 struct {
	conn *tls.Conn
	fr   *http2.Framer
}

func (ts *testServer) rawH2(t *testing.T, name string) *rawH2 {
	t.Helper()
	cfg := ts.clientTLS(ts.client(t, name, certgen.RoleUser))
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", ts.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	return &rawH2{conn: conn, fr: fr}
}

// call opens stream id for a WatchJobOutput call with extra header fields,
// without a request message (so a served call stays open). With repeat,
// the extra fields are the same 1 KiB field repeat times: HPACK sends it
// once and then as a one-byte index (a "header bomb": a few bytes on the
// wire, repeat KiB once decoded). Otherwise there are extra KiB of fields
// sent as they are, over as many CONTINUATION frames as it takes.
// It returns the error of writing the frames.
func (h *rawH2) call(id uint32, extra int, repeat bool) error {
	var block strings.Builder
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "https"}, {":path", pb.Foreman_WatchJobOutput_FullMethodName},
		{":authority", "127.0.0.1"}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for range extra {
		enc.WriteField(hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("a", 1<<10-40), Sensitive: !repeat})
	}
	b := []byte(block.String())
	const frame = 16 << 10 // the default SETTINGS_MAX_FRAME_SIZE
	first := b[:min(len(b), frame)]
	b = b[len(first):]
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndHeaders: len(b) == 0}); err != nil {
		return err
	}
	for len(b) > 0 {
		n := min(len(b), frame)
		if err := h.fr.WriteContinuation(id, n == len(b), b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// resets reads frames until stream id is reset, and returns the code; it
// answers the server's settings and pings on the way.
func (h *rawH2) reset(t *testing.T, id uint32) http2.ErrCode {
	t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames, waiting for stream %d to be reset: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return f.ErrCode
			}
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY (%v) waiting for stream %d to be reset", f.ErrCode, id)
		}
	}
}

// closed reads frames until the server closes the connection (a GOAWAY,
// then EOF or a reset).
func (h *rawH2) closed(t *testing.T) {
	t.Helper()
	for {
		if _, err := h.fr.ReadFrame(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the connection is still open")
			}
			return
		}
	}
}

// TestHeaderListTooLarge sends a call with more header bytes than the
// server allows: grpc-go's client refuses to send it (the server
// announced its limit), and a client that ignores the announcement has
// its stream reset without the call reaching the service, while the
// connection, and the server, go on serving.
func TestHeaderListTooLarge(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	alice := ts.as(t, "alice", certgen.RoleUser)
	if _, err := alice.ListJobs(ctx, &pb.ListJobsRequest{}); err != nil { // the settings are known from here on
		t.Fatal(err)
	}
	big := metadata.AppendToOutgoingContext(ctx, "x-pad", strings.Repeat("a", DefaultMaxHeaderBytes))
	if _, err := alice.StartJob(big, &pb.StartJobRequest{Command: "true"}); err == nil {
		t.Error("grpc-go sent a call with more header bytes than the server allows")
	}

	// A header bomb: 64 KiB once decoded, a few hundred bytes sent. The
	// stream is reset; the connection goes on.
	h := ts.rawH2(t, "mallory")
	if err := h.call(1, 64, true); err != nil {
		t.Fatal(err)
	}
	if code := h.reset(t, 1); code != http2.ErrCodeFrameSize {
		t.Errorf("a header bomb's stream reset with %v, want %v", code, http2.ErrCodeFrameSize)
	}
	if err := h.call(3, 64, true); err != nil {
		t.Fatalf("the connection after a header bomb: %v", err)
	}
	if code := h.reset(t, 3); code != http2.ErrCodeFrameSize {
		t.Errorf("a second header bomb's stream reset with %v", code)
	}
	// 1 MiB of headers: the connection is closed before they are read
	// (the write may already fail).
	h = ts.rawH2(t, "mallory")
	if err := h.call(1, 1<<10, false); err == nil {
		h.closed(t)
	}
	ts.runner.mu.Lock()
	calls := len(ts.runner.starts)
	ts.runner.mu.Unlock()
	if calls != 0 {
		t.Errorf("the runner was called %d times", calls)
	}
	served(t, alice, "alice")
}

// TestStreamCapRaw opens more streams on one connection than the server
// allows, with a client that ignores the announced limit: the streams
// past the cap are refused (REFUSED_STREAM).
func TestStreamCapRaw(t *testing.T) {
	const streams = 8
	ts := startServer(t, func(c *Config) { c.MaxStreamsPerConn = streams })
	h := ts.rawH2(t, "mallory")
	for i := range streams + 1 {
		if err := h.call(uint32(2*i+1), 0, false); err != nil {
			t.Fatal(err)
		}
	}
	if code := h.reset(t, 2*streams+1); code != http2.ErrCodeRefusedStream {
		t.Errorf("stream %d of %d allowed reset with %v, want %v", streams+1, streams, code, http2.ErrCodeRefusedStream)
	}
	served(t, ts.as(t, "bob", certgen.RoleUser), "bob")
}

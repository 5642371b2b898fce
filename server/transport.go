package server

import (
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// The server's HTTP/2 write path. gRPC's transport gathers frames in a
// write buffer and hands it to TLS, which seals it as 16 KiB records and,
// left alone, writes each record to the socket with its own write: 16
// system calls, 16 TCP segments and 16 wake-ups of the reader for 256 KiB
// of output. coalescingCreds gathers the records of one transport write
// and writes them at once.
const (
	// writeBufferSize is what the transport gathers before a write (grpc-go's
	// default is 32 KiB): four TLS records, a write of 64 KiB. The buffer is
	// shared (grpc.SharedWriteBuffer): a connection holds one only while it
	// writes, so idle watchers' connections hold none. It is not larger
	// because a connection whose client reads slowly holds it (and the
	// batch of records) while its socket write waits: with 100 watchers,
	// 256 KiB buffers grew the server by 20 MiB more than 64 KiB ones.
	writeBufferSize = 64 << 10
	// readBufferSize is the transport's read buffer per connection. Clients
	// send little on a watch (window updates), and TLS already buffers a
	// record: a small buffer saves memory per connection.
	readBufferSize = 4 << 10
)

// transportOptions are the server's HTTP/2 buffer options; see above. The
// flow-control windows are grpc-go's (64 KiB per stream, growing by
// probing): they bound what a client may send before the server reads
// it, memory held per stream, which the server keeps small.
func transportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.WriteBufferSize(writeBufferSize),
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(readBufferSize),
	}
}

// coalescingCreds are TLS transport credentials whose connections write
// each transport write (a gathered batch of HTTP/2 frames) to the socket
// with one write, however many TLS records it makes.
type coalescingCreds struct {
	credentials.TransportCredentials
}

func (c coalescingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	bc := &batchConn{Conn: raw}
	conn, info, err := c.TransportCredentials.ServerHandshake(bc)
	if err != nil {
		return nil, nil, err
	}
	return &flushConn{Conn: conn, bc: bc}, info, nil
}

func (c coalescingCreds) Clone() credentials.TransportCredentials {
	return coalescingCreds{c.TransportCredentials.Clone()}
}

// batchPool holds the buffers batchConns gather records in, only while a
// write is under way.
var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchSize); return &b }}

// batchSize is the most a batchConn gathers before it writes: the
// transport's write buffer sealed as records (each 16 KiB record grows by
// 22 bytes), with room to spare.
const batchSize = writeBufferSize + 8<<10

// batchConn is the socket under TLS. Between begin and end (a transport
// write in progress) it gathers what TLS writes; otherwise (the handshake,
// alerts) it writes through.
type batchConn struct {
	net.Conn
	// mu guards the fields below and orders writes to Conn.
	mu      sync.Mutex
	writers int     // transport writes in progress
	buf     *[]byte // gathered bytes, from batchPool; nil when none
}

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.writers > 0 {
		if b.buf == nil {
			b.buf = batchPool.Get().(*[]byte)
		}
		if len(*b.buf)+len(p) <= cap(*b.buf) {
			*b.buf = append(*b.buf, p...)
			return len(p), nil
		}
	}
	// Not gathering, or the batch is full: what was gathered goes first.
	if err := b.flushLocked(); err != nil {
		return 0, err
	}
	return b.Conn.Write(p)
}

func (b *batchConn) begin() {
	b.mu.Lock()
	b.writers++
	b.mu.Unlock()
}

// end writes what was gathered once no transport write is in progress.
func (b *batchConn) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.writers--; b.writers > 0 {
		return nil
	}
	return b.flushLocked()
}

func (b *batchConn) flushLocked() error {
	if b.buf == nil {
		return nil
	}
	buf := b.buf
	b.buf = nil
	var err error
	if len(*buf) > 0 {
		_, err = b.Conn.Write(*buf)
	}
	*buf = (*buf)[:0]
	batchPool.Put(buf)
	return err
}

// flushConn is the TLS connection the transport writes to: each of its
// writes reaches the socket as one write.
type flushConn struct {
	net.Conn
	bc *batchConn
}

func (f *flushConn) Write(p []byte) (int, error) {
	f.bc.begin()
	n, err := f.Conn.Write(p)
	if ferr := f.bc.end(); err == nil && ferr != nil {
		return 0, ferr
	}
	return n, err
}

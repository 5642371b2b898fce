package server

import "google.golang.org/grpc"

// The server's HTTP/2 buffers. gRPC's transport gathers frames in a write
// buffer and hands it to TLS, which seals it as 16 KiB records, each
// written with its own write. Gathering the records of one buffer into one
// socket write (tried: a net.Conn under TLS that batched them) showed no
// gain in the server's CPU per GiB in alternating runs, and it held a
// second buffer per connection while a write waited on a slow client, so
// the transport keeps grpc-go's write size.
const (
	// readBufferSize is the transport's read buffer per connection
	// (grpc-go's default is 32 KiB). Clients send little on a watch
	// (window updates), TLS already buffers a record, and frames of 4 KiB
	// or more are read past it: a small buffer saves memory per
	// connection (100 watchers: 2.8 MiB).
	readBufferSize = 4 << 10
)

// transportOptions are the server's HTTP/2 buffer options. The write
// buffer (grpc-go's 32 KiB) is shared: a connection holds one only while
// it writes, not for as long as it is open. The flow-control windows are
// grpc-go's (64 KiB per stream, growing by probing): they bound what a
// client may send before the server reads it, memory held per stream.
func transportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(readBufferSize),
	}
}

package client

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"

	"github.com/drrev/telehandler/internal/watchcodec"
)

// HTTP/2 flow control of the CLI's connection: how much the server may send
// before the CLI acknowledges it. A watch moves bulk output, so the windows
// are larger than grpc-go's 64 KiB start (it then grows them by probing,
// with pings); the memory is the CLI's, at most one window per stream.
const (
	streamWindow = 1 << 20
	connWindow   = 2 << 20
)

// transportOptions are the HTTP/2 and buffer options of the CLI's
// connection, tuned for streaming output to stdout: large windows, the
// framer reading from TLS directly (TLS already buffers a record; a bufio
// on top only adds a copy), and receive buffers that are not cleared
// before gRPC fills them.
func transportOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithReadBufferSize(0),
		experimental.WithBufferPool(receivePool),
	}
}

// receivePool is the CLI's gRPC buffer pool (one process, one pool).
var receivePool = &watchcodec.DirtyPool{}

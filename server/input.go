package server

import (
	"errors"
	"io"

	"google.golang.org/grpc"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/jobrunner"
)

// maxWindowSide is the largest terminal row or column count (the kernel's
// struct winsize holds 16 bits).
const maxWindowSide = 1<<16 - 1

// validateWindowSize checks a window size's fields fit a terminal (nil is
// fine: no size).
func validateWindowSize(what string, ws *pb.WindowSize) error {
	if ws.GetRows() > maxWindowSide || ws.GetCols() > maxWindowSide {
		return errorf(errInvalidArgument, "%s %dx%d: rows and cols are at most %d", what, ws.GetRows(), ws.GetCols(), maxWindowSide)
	}
	return nil
}

// WriteJobInput feeds a job's stdin or terminal. The first message names
// the job; the caller must be allowed to see it (owner or admin; anyone
// else gets the NotFound of a missing job) and get its input (one writer
// at a time). Flow control: the next message is received only once the
// previous one was written to the job, so a job that does not read stops
// its writer through gRPC's flow control: per stream the server holds one
// message (at most the server's receive limit) plus what the HTTP/2
// flow-control window lets the transport buffer (grpc-go's window grows
// with the bandwidth-delay product up to 16 MiB per connection).
func (f *foreman) WriteJobInput(stream grpc.ClientStreamingServer[pb.WriteJobInputRequest, pb.WriteJobInputResponse]) error {
	ctx := stream.Context()
	msg, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return errorf(errInvalidArgument, "the input stream ended before its first message, which names the job")
	}
	if err != nil {
		return err
	}
	name := msg.GetName()
	who, job, err := f.lookup(ctx, name)
	if err != nil {
		return err
	}
	in, err := f.runner.AttachInput(job.ID, who.Name)
	if errors.Is(err, jobrunner.ErrInputClosed) {
		// The job ended (or its stdin was closed) before this writer came:
		// as when it stops reading later, nothing was written.
		return stream.SendAndClose(&pb.WriteJobInputResponse{})
	}
	if err != nil {
		return jobErr(name, err)
	}
	defer in.Release()
	f.log.Info("input attached", "job", name, "owner", job.Owner, "by", who.Name)

	// Messages come from a receiver goroutine, so that the call also ends
	// when the job does (a client that attached and sends nothing would
	// otherwise hold it open). The channel is unbuffered: the receiver
	// holds at most one message while the previous one is written, and
	// flow control still stops the client.
	msgs := make(chan *pb.WriteJobInputRequest)
	recvErr := make(chan error, 1)
	// The receiver returns once the call ends: grpc cancels the stream's
	// context when this handler returns, which ends a blocked Recv.
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	var written int64
	done := func() error {
		return stream.SendAndClose(&pb.WriteJobInputResponse{BytesWritten: written})
	}
	for {
		if ws := msg.GetResize(); ws != nil {
			if err := validateWindowSize("resize", ws); err != nil {
				return err
			}
			if err := in.Resize(uint16(ws.GetRows()), uint16(ws.GetCols())); err != nil {
				if errors.Is(err, jobrunner.ErrInputClosed) {
					return done()
				}
				return jobErr(name, err)
			}
		}
		if data := msg.GetData(); len(data) > 0 {
			n, err := in.Write(ctx, data)
			written += int64(n)
			if errors.Is(err, jobrunner.ErrInputClosed) {
				// The job closed its stdin or ended: like a pipe's
				// reader going away, not the writer's error.
				return done()
			}
			if err != nil {
				return jobErr(name, err)
			}
		}
		if msg.GetClose() {
			if err := in.Close(); err != nil {
				return jobErr(name, err)
			}
			return done()
		}
		select {
		case msg = <-msgs:
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				// Detached: the input stays open for the next writer.
				return done()
			}
			return err
		case <-in.Done():
			// The job ended; the receiver ends with the call.
			return done()
		}
	}
}

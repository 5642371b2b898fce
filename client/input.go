package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// inputChunk is the most stdin bytes in one WriteJobInput message: under
// 32 KiB for the reason maxChunkBytes is on the server (grpc-go's buffer
// pool tiers).
const inputChunk = 32<<10 - 64

// The detach sequence of a terminal session, docker's: Ctrl-P Ctrl-Q.
const (
	ctrlP = 0x10
	ctrlQ = 0x11
)

// detacher finds Ctrl-P Ctrl-Q in what the user types. A Ctrl-P is held
// back until the next byte shows whether it starts the sequence; otherwise
// it is passed on with that byte.
type detacher struct{ pending bool }

// feed returns the bytes of p to send and whether the sequence was typed
// (the bytes before it are sent, those after it dropped).
func (d *detacher) feed(p []byte) ([]byte, bool) {
	out := make([]byte, 0, len(p)+1)
	for _, b := range p {
		if d.pending {
			d.pending = false
			if b == ctrlQ {
				return out, true
			}
			out = append(out, ctrlP)
		}
		if b == ctrlP {
			d.pending = true
			continue
		}
		out = append(out, b)
	}
	return out, false
}

// inputConfig is what sendInput streams where.
type inputConfig struct {
	// name is the job, "jobs/ID".
	name string
	// in is read until EOF.
	in io.Reader
	// tty: a terminal session. Ctrl-P Ctrl-Q detaches and EOF only
	// detaches; without tty EOF closes the job's stdin.
	tty bool
	// size goes in the first message (a terminal's size at attach);
	// resize carries later sizes (SIGWINCH). Both nil without tty.
	size   *pb.WindowSize
	resize <-chan *pb.WindowSize
}

// inputResult is how an input stream ended.
type inputResult struct {
	// detached: the session ended leaving the job's input open (Ctrl-P
	// Ctrl-Q, or EOF on a terminal).
	detached bool
	// sent is what was read from in and sent; written what the server
	// wrote to the job (less when the job stopped reading or ended).
	sent, written int64
	err           error
}

// sendInput streams cfg.in into the job's input until EOF, a detach, or
// ctx's end. Flow control: Send blocks while the server has not written
// what it received to the job, and nothing more is read from cfg.in
// meanwhile, so a job that does not read stops this one.
func sendInput(ctx context.Context, conn *Conn, cfg inputConfig) inputResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.WriteJobInput(ctx)
	if err != nil {
		return inputResult{err: err}
	}
	// The first message names the job at once, before any input: a
	// refusal (not found, held by someone else) comes back before the
	// user types anything, through the receiver below. RecvMsg returns
	// when the server ends the call: early on a refusal or when the job's
	// input closed, or with the response after CloseSend.
	var resp pb.WriteJobInputResponse
	ended := make(chan error, 1)
	if err := stream.Send(&pb.WriteJobInputRequest{Name: cfg.name, Resize: cfg.size}); err != nil && !errors.Is(err, io.EOF) {
		return inputResult{err: err}
	}
	go func() { ended <- stream.RecvMsg(&resp) }()

	chunks := make(chan []byte)
	readErr := make(chan error, 1)
	go readChunks(ctx, cfg.in, chunks, readErr)

	var res inputResult
	finish := func() inputResult {
		_ = stream.CloseSend()
		select {
		case err := <-ended:
			res.err = err
		case <-ctx.Done():
			res.err = ctx.Err()
		}
		res.written = resp.GetBytesWritten()
		return res
	}
	var det detacher
	for {
		select {
		case <-ctx.Done():
			res.err = ctx.Err()
			return res
		case err := <-ended:
			// The server ended the call first.
			res.err = err
			res.written = resp.GetBytesWritten()
			return res
		case ws := <-cfg.resize:
			if err := stream.Send(&pb.WriteJobInputRequest{Resize: ws}); err != nil {
				return finish()
			}
		case data, ok := <-chunks:
			if !ok {
				if err := <-readErr; err != nil {
					res.err = fmt.Errorf("read stdin: %w", err)
					return res
				}
				if cfg.tty {
					res.detached = true
				} else if err := stream.Send(&pb.WriteJobInputRequest{Close: true}); err != nil && !errors.Is(err, io.EOF) {
					res.err = err
					return res
				}
				return finish()
			}
			detach := false
			if cfg.tty {
				data, detach = det.feed(data)
			}
			if len(data) > 0 {
				if err := stream.Send(&pb.WriteJobInputRequest{Data: data}); err != nil {
					// io.EOF: the server ended the call; finish
					// collects its status.
					return finish()
				}
				res.sent += int64(len(data))
			}
			if detach {
				res.detached = true
				return finish()
			}
		}
	}
}

// readChunks reads r into fresh buffers of inputChunk bytes and hands them
// out on chunks until EOF or an error (then it closes chunks after putting
// the error, nil for EOF, on errc) or ctx's end. A read blocked on a
// terminal cannot be interrupted: the goroutine then lives until the
// process exits.
func readChunks(ctx context.Context, r io.Reader, chunks chan<- []byte, errc chan<- error) {
	for {
		buf := make([]byte, inputChunk)
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case chunks <- buf[:n]:
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			errc <- err
			close(chunks)
			return
		}
	}
}

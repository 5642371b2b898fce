package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The shim's half of the warm protocol (protocol.go, pool_linux.go).

// readWarmSpec reads the warmSpec from specFD to EOF and closes it.
func readWarmSpec() (warmSpec, error) {
	var ws warmSpec
	f := os.NewFile(specFD, "warm spec")
	if f == nil {
		return ws, shimErr("read warm spec", errors.New("spec fd is not open"))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSpecSize+1))
	f.Close()
	if err != nil {
		return ws, shimErr("read warm spec", err)
	}
	if len(data) > maxSpecSize {
		return ws, shimErr("read warm spec", fmt.Errorf("spec larger than %d bytes", maxSpecSize))
	}
	if err := json.Unmarshal(data, &ws); err != nil {
		return ws, shimErr("read warm spec", err)
	}
	return ws, nil
}

// recvJobSpec blocks until the job comes on warmFD: one byte saying which
// of the job's stdin, stdout and stderr come with it (warmStdin,
// warmStdout, warmStderr), those files (SCM_RIGHTS, in that order), then
// the shimSpec to EOF. The files become fds 0-2 (the ones that did not come
// stay /dev/null); warmFD is closed.
func recvJobSpec() (shimSpec, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(3*4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(warmFD, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return shimSpec{}, shimErr("read spec", err)
	}
	if n != 1 {
		// The parent closed its end: the pool was drained.
		return shimSpec{}, shimErr("read spec", io.ErrUnexpectedEOF)
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return shimSpec{}, shimErr("read spec", err)
	}
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return shimSpec{}, shimErr("read spec", err)
		}
		fds = append(fds, got...)
	}
	var targets []int
	for i, bit := range []byte{warmStdin, warmStdout, warmStderr} {
		if buf[0]&bit != 0 {
			targets = append(targets, i)
		}
	}
	if len(fds) != len(targets) {
		return shimSpec{}, shimErr("read spec", fmt.Errorf("%d files for stdio, want %d", len(fds), len(targets)))
	}
	for i, fd := range fds {
		if err := unix.Dup3(fd, targets[i], 0); err != nil {
			return shimSpec{}, shimErr("stdio", err)
		}
		unix.Close(fd)
	}
	f := os.NewFile(warmFD, "warm socket")
	data, err := io.ReadAll(io.LimitReader(f, maxSpecSize+1))
	f.Close()
	if err != nil {
		return shimSpec{}, shimErr("read spec", err)
	}
	return decodeSpec(data)
}

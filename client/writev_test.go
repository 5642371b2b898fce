package client

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteBuffers: the buffers of one message reach a file (one writev),
// a pipe read slower than it is written (short writes resumed), and any
// other writer, whole and in order.
func TestWriteBuffers(t *testing.T) {
	var bufs [][]byte
	var want []byte
	for i := range 3000 { // more than IOV_MAX buffers
		b := bytes.Repeat([]byte{byte(i)}, 1+i%300)
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	cp := func() [][]byte {
		out := make([][]byte, len(bufs))
		copy(out, bufs)
		return out
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeBuffers(f, cp()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(f.Name()); !bytes.Equal(got, want) {
		t.Errorf("file: %d bytes that differ from the %d written", len(got), len(want))
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		got <- b
	}()
	err = writeBuffers(w, cp())
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Errorf("pipe: %d bytes that differ from the %d written", len(b), len(want))
	}

	var buf bytes.Buffer
	if err := writeBuffers(&buf, cp()); err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("buffer: %d bytes, %v", buf.Len(), err)
	}

	// A closed reader: the error comes back.
	r, w, _ = os.Pipe()
	r.Close()
	if err := writeBuffers(w, cp()); err == nil {
		t.Error("writing to a pipe with no reader succeeded")
	}
	w.Close()
}

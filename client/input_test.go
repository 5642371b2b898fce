package client

import (
	"bytes"
	"testing"
)

// TestDetacher: Ctrl-P Ctrl-Q detaches, also split across reads; a Ctrl-P
// followed by anything else is passed on with it.
func TestDetacher(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reads  []string
		sent   string
		detach bool
	}{
		{"plain", []string{"ls\r"}, "ls\r", false},
		{"sequence", []string{"ab\x10\x11cd"}, "ab", true},
		{"split across reads", []string{"ab\x10", "\x11cd"}, "ab", true},
		{"ctrl-p then other", []string{"\x10x"}, "\x10x", false},
		{"ctrl-p held until the next byte", []string{"a\x10", "b"}, "a\x10b", false},
		{"ctrl-p ctrl-p ctrl-q", []string{"\x10\x10\x11"}, "\x10", true},
		{"ctrl-q alone", []string{"\x11"}, "\x11", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d detacher
			var sent bytes.Buffer
			detached := false
			for _, r := range tc.reads {
				out, det := d.feed([]byte(r))
				sent.Write(out)
				if det {
					detached = true
					break
				}
			}
			if sent.String() != tc.sent || detached != tc.detach {
				t.Errorf("sent %q, detached %v; want %q, %v", sent.String(), detached, tc.sent, tc.detach)
			}
		})
	}
}

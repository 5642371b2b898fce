package client

import (
	"strings"
	"testing"
)

// TestTextOnly: a command line, environment or directory that is not UTF-8
// is refused before anything is sent, naming which argument it is (shown
// escaped) and what to do; UTF-8 of any kind passes.
func TestTextOnly(t *testing.T) {
	if err := textOnly([]string{"echo", "héllo", "\u202e", "\x1b[2J"}, []string{"A=ü"}, "/tmp/ä"); err != nil {
		t.Errorf("UTF-8 refused: %v", err)
	}
	for _, c := range []struct {
		argv, env []string
		dir, want string
	}{
		{[]string{"echo", "ok", "a\xffb"}, nil, "", `argument 2 ($'a\xffb') is not UTF-8`},
		{[]string{"\xfe"}, nil, "", "command $'\\xfe' is not UTF-8"},
		{[]string{"true"}, []string{"K=\xff"}, "", "--env $'K=\\xff' is not UTF-8"},
		{[]string{"true"}, nil, "/tmp/\xff", "--dir $'/tmp/\\xff' is not UTF-8"},
	} {
		err := textOnly(c.argv, c.env, c.dir)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "base64") {
			t.Errorf("textOnly(%q, %q, %q) = %v, want %q and the fix", c.argv, c.env, c.dir, err, c.want)
		}
	}
}

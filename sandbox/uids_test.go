package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUIDPool: distinct uids while held, ErrNoUID when all are, and a uid
// given back is the last to come again.
func TestUIDPool(t *testing.T) {
	p := newUIDPool(UIDRange{First: 1000, Count: 3})
	a, _ := p.allocate()
	b, _ := p.allocate()
	c, _ := p.allocate()
	if a == b || b == c || a == c || min(a, b, c) != 1000 || max(a, b, c) != 1002 {
		t.Fatalf("uids %d %d %d, want 1000-1002 once each", a, b, c)
	}
	if _, err := p.allocate(); !errors.Is(err, ErrNoUID) {
		t.Fatalf("fourth uid of three: %v, want ErrNoUID", err)
	}
	p.release(b)
	p.release(a)
	if got, _ := p.allocate(); got != a {
		t.Errorf("after giving back %d then %d, got %d: the round-robin should reach %d first", b, a, got, a)
	}
	if got, _ := p.allocate(); got != b {
		t.Errorf("got %d, want %d", got, b)
	}
}

// TestUIDRangeValidate: a range may not hold an id of a user, a group or a
// subordinate range of the host.
func TestUIDRangeValidate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	passwd := write("passwd", "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
	subuid := write("subuid", "alice:100000:65536\n")
	for _, tc := range []struct {
		r    UIDRange
		want string // "" = accepted
	}{
		{DefaultUIDRange, ""},
		{UIDRange{First: 60000, Count: 10000}, "nobody"},
		{UIDRange{First: 150000, Count: 10}, "alice"},
		{UIDRange{First: 0, Count: 10}, "FIRST-LAST"},
		{UIDRange{First: 10, Count: 0}, "FIRST-LAST"},
		{UIDRange{First: 1<<32 - 2, Count: 5}, "FIRST-LAST"},
	} {
		err := tc.r.validate(passwd, subuid, filepath.Join(dir, "missing"))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("range %+v: %v, want %q", tc.r, err, tc.want)
		}
	}
}

package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestServePprof checks that the hidden --pprof endpoint serves the
// profile index and a profile, and is gone once stopped.
func TestServePprof(t *testing.T) {
	addr, stop, err := servePprof("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr.String() + "/debug/pprof/"
	for _, path := range []string{"", "heap?debug=1", "goroutine?debug=1"} {
		resp, err := http.Get(base + path)
		if err != nil {
			stop()
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s: %s, %d bytes", path, resp.Status, len(body))
		}
		if path == "" && !strings.Contains(string(body), "goroutine") {
			t.Errorf("the index lists no goroutine profile")
		}
	}
	stop()
	if _, err := http.Get(base); err == nil {
		t.Error("pprof still answers after stop")
	}
	if _, _, err := servePprof("256.0.0.1:1", slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Error("servePprof on a bad address: no error")
	}
}

func TestParseSeccomp(t *testing.T) {
	for in, want := range map[string]bool{"on": false, "off": true} {
		if got, err := parseSeccomp(in); err != nil || got != want {
			t.Errorf("parseSeccomp(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "false", "OFF", "no"} {
		if _, err := parseSeccomp(in); err == nil || !strings.Contains(err.Error(), "use on (the default) or off") {
			t.Errorf("parseSeccomp(%q): error %v, want one naming on and off", in, err)
		}
	}
}

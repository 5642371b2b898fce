package main

import (
	"testing"
	"time"
)

func TestParseRetain(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "1d": 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseRetain(in); err != nil || got != want {
			t.Errorf("parseRetain(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0d", "-1h", "d", "7days", "1.5d", "99999999d"} {
		if _, err := parseRetain(in); err == nil {
			t.Errorf("parseRetain(%q) succeeded", in)
		}
	}
}

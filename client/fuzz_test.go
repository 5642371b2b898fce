package client

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz target of the client's escaping of what the server sends. `make
// test` runs its seed corpus (testdata/fuzz/FuzzSafeText) as an ordinary
// test; `make fuzz` fuzzes it for a while.

// FuzzSafeText: whatever the server sends, what safeText and shellQuote
// print holds no rune a terminal acts on and no invalid UTF-8, the text
// safeText leaves alone needed no escape, and distinct strings stay
// distinct (an escape cannot be forged with a backslash).
func FuzzSafeText(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[2J", "\u202eexe.txt", "\xff", `\x1b`, "it's", "\u009b", "a\x7f", "\U000e0041"} {
		f.Add(s, `\`+s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, out := range []string{safeText(a), shellQuote(a, []string{b})} {
			if !utf8.ValidString(out) {
				t.Fatalf("escaped output %q is not UTF-8", out)
			}
			for _, r := range out {
				if unsafeRune(r) {
					t.Fatalf("escaped output %q holds %U", out, r)
				}
			}
		}
		if safeText(a) == a && (!utf8.ValidString(a) || strings.ContainsFunc(a, unsafeRune)) {
			t.Fatalf("safeText(%q) left it as it is", a)
		}
		if a != b && safeText(a) == safeText(b) {
			t.Fatalf("safeText(%q) = safeText(%q) = %q", a, b, safeText(a))
		}
		if a != b && shellQuote("x", []string{a}) == shellQuote("x", []string{b}) {
			t.Fatalf("shellQuote shows %q and %q alike: %s", a, b, shellQuote("x", []string{a}))
		}
	})
}

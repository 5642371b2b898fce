package client

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Text that comes from the server (a job's command line, its name, owner
// and working directory, an error message that echoes what a client sent)
// was written by someone else, possibly a hostile user whose job the admin
// lists. Printed raw, an escape sequence in it clears the reader's screen,
// retitles the terminal or rewrites what the lines around it say, and a
// bidi override shows it backwards. So every such string goes through
// safeText (or shellQuote, or printJSON) on its way to a terminal: runes a
// terminal could act on are written as escapes. A job's own output, which
// watch copies, is the exception: it stays byte-exact.

// unsafeRune reports whether r must not reach a terminal as it is: C0 and
// C1 control characters (ESC and CSI among them), DEL, and every rune that
// is not graphic in the strconv.IsPrint sense, which takes in the bidi
// controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C), zero-width
// and other format characters, and line and paragraph separators. It is the
// one rule for what gets escaped; bytes that are not UTF-8 are escaped too,
// and the backslash, which starts an escape, by the writers that use one.
func unsafeRune(r rune) bool {
	return !strconv.IsPrint(r)
}

// safeText returns s with every unsafe rune, each byte of invalid UTF-8 and
// the backslash written as a Go escape, as strconv.Quote does without the
// quotes: ESC is \x1b, a newline \n, U+202E \u202e, the byte 0xff \xff and a
// backslash \\. Printable text, quotes included, is kept as it is.
func safeText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r == '\\' || unsafeRune(r) }) {
		return s
	}
	return escapeText(s, 0)
}

// escapeText writes s as safeText does, and also escapes quote (when it is
// not 0) as \': shellQuote uses it for the body of a $'...' word, whose
// escapes bash, zsh, ksh and POSIX.1-2024 sh read as Go writes them.
func escapeText(s string, quote byte) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case quote != 0 && r == rune(quote):
			b.WriteByte('\\')
			b.WriteByte(quote)
		case unsafeRune(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// escapeJSON makes JSON text safe for a terminal without changing what it
// decodes to: every unsafe rune is written as its \uXXXX escape (a surrogate
// pair above U+FFFF). Outside strings JSON has only ASCII punctuation,
// letters and blanks (tab, newline, carriage return: kept), so the unsafe
// runes found are inside strings, where the escape means the same rune. The
// encoders escape C0 there already, but not DEL, C1 or the bidi controls.
// Invalid UTF-8, which no encoder writes, becomes U+FFFD.
func escapeJSON(js []byte) []byte {
	out := make([]byte, 0, len(js))
	for i := 0; i < len(js); {
		r, n := utf8.DecodeRune(js[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			out = append(out, `\ufffd`...)
		case r == '\t' || r == '\n' || r == '\r' || !unsafeRune(r):
			out = append(out, js[i:i+n]...)
		default:
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
			} else {
				out = fmt.Appendf(out, `\u%04x`, r)
			}
		}
		i += n
	}
	return out
}

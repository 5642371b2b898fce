package client

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// hostile holds what a job's owner can put in a command line to attack the
// terminal of whoever lists it: clear the screen and retitle the window,
// ring, rewrite the line with a carriage return, a C1 CSI, DEL, a right-to-
// left override that shows "exe.txt" as "txt.exe", and bytes that are not
// UTF-8.
var hostile = []string{
	"\x1b[2J\x1b[H", "\x1b]0;pwned\x07", "ok\rFAILED", "\u009b31m", "a\x7fb", "\u202eexe.txt", "\xff\xfe",
	"\u2066x\u2069", "zero\u200bwidth", "tab\there", "new\nline", "nul\x00",
}

// noControls fails when s holds anything a terminal acts on.
func noControls(t *testing.T, what, s string) {
	t.Helper()
	for i, r := range s {
		if r == '\n' && what != "" && strings.HasPrefix(what, "lines:") {
			continue
		}
		if unsafeRune(r) || r == 0xfffd {
			t.Errorf("%s: rune %U at byte %d reaches the terminal: %q", what, r, i, s)
		}
	}
}

func TestSafeText(t *testing.T) {
	cases := map[string]string{
		"":                       "",
		"jobs/3mxk2d7q":          "jobs/3mxk2d7q",
		`say "hi" and 'bye' ü €`: `say "hi" and 'bye' ü €`,
		"\x1b[2J\x1b[H":          `\x1b[2J\x1b[H`,
		"\x1b]0;pwned\x07":       `\x1b]0;pwned\a`,
		"ok\rFAILED":             `ok\rFAILED`,
		"\u009b31m":              `\u009b31m`,
		"a\x7fb":                 `a\x7fb`,
		"\u202eexe.txt":          `\u202eexe.txt`,
		"\xff\xfe":               `\xff\xfe`,
		`C:\x1b`:                 `C:\\x1b`, // a backslash cannot forge an escape
		"new\nline\ttab":         `new\nline\ttab`,
		"\U000e0041":             `\U000e0041`, // a tag character
	}
	for in, want := range cases {
		if got := safeText(in); got != want {
			t.Errorf("safeText(%q) = %q; want %q", in, got, want)
		}
	}
	for _, in := range hostile {
		noControls(t, "safeText", safeText(in))
	}
}

func TestShellQuoteEscapes(t *testing.T) {
	cases := []struct {
		cmd  string
		args []string
		want string
	}{
		{"echo", []string{"hello", "it's"}, `echo hello 'it'\''s'`},
		{"printf", []string{"\x1b[2J\x1b]0;it's\x07"}, `printf $'\x1b[2J\x1b]0;it\'s\a'`},
		{"cat", []string{"\u202eexe.txt", `back\slash`}, `cat $'\u202eexe.txt' 'back\slash'`},
		{"echo", []string{"\xff", "a\\b\n"}, `echo $'\xff' $'a\\b\n'`},
	}
	for _, c := range cases {
		got := shellQuote(c.cmd, c.args)
		if got != c.want {
			t.Errorf("shellQuote(%q, %q) = %s; want %s", c.cmd, c.args, got, c.want)
		}
		noControls(t, "shellQuote", got)
	}

	// What is shown reads back, pasted into bash, as the same bytes.
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Log("no bash: the round trip is not checked")
		return
	}
	args := append([]string{"it's", `back\slash`, "é"}, hostile[:len(hostile)-1]...) // no NUL in an argv
	line := shellQuote("printf", append([]string{`%s\0`}, args...))
	out, err := exec.Command(bash, "-c", line).Output()
	if err != nil {
		t.Fatalf("bash -c %s: %v", line, err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"); strings.Join(got, "|") != strings.Join(args, "|") {
		t.Errorf("bash -c %s\nprinted %q\nwant    %q", line, got, args)
	}
}

// TestStatusAndListEscape prints a job whose command, name, owner and
// directory are hostile the ways status and list do, in text and JSON.
func TestStatusAndListEscape(t *testing.T) {
	j := &pb.Job{
		Name:       "jobs/\x1b[31mred",
		Owner:      "mallory\x1b]0;root\x07",
		Command:    "sh",
		Args:       append([]string{"-c", "printf '\\033[2J'"}, hostile...),
		WorkingDir: "/tmp/\u202eoof",
		Status:     &pb.JobStatus{State: pb.State_STATE_RUNNING, StartTime: timestamppb.New(time.Now())},
	}
	var b bytes.Buffer
	if err := printJob(&b, j); err != nil {
		t.Fatal(err)
	}
	noControls(t, "lines: status", b.String())
	for _, want := range []string{`name:     jobs/\x1b[31mred`, `owner:    mallory\x1b]0;root\a`, `dir:      /tmp/\u202eoof`,
		`command:  sh -c 'printf '\''\033[2J'\''' $'\x1b[2J\x1b[H' $'\x1b]0;pwned\a' $'ok\rFAILED'`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status does not show %s:\n%s", want, b.String())
		}
	}

	b.Reset()
	if err := printWideList(&b, []*pb.Job{j}, time.Now()); err != nil {
		t.Fatal(err)
	}
	noControls(t, "lines: list -o wide", b.String())
	if lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); len(lines) != 2 ||
		!strings.HasPrefix(lines[1], `jobs/\x1b[31mred  -     mallory\x1b]0;root\a  RUNNING  0s   sh -c`) {
		t.Errorf("list -o wide:\n%s", b.String())
	}
	b.Reset()
	if err := printList(&b, []*pb.Job{j}, time.Now()); err != nil {
		t.Fatal(err)
	}
	noControls(t, "lines: list", b.String())
	if lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n"); len(lines) != 2 ||
		!strings.Contains(lines[1], `mallory\x1b`) || !strings.Contains(lines[1], `RUNNING`) {
		t.Errorf("list:\n%s", b.String())
	}

	// JSON: escaped too, and it still decodes to the exact strings.
	// The one byte sequence that cannot be in JSON is invalid UTF-8: proto
	// strings are UTF-8, so the server never sends it (protojson refuses).
	j.Args = slices.DeleteFunc(j.Args, func(a string) bool { return !utf8.ValidString(a) })
	b.Reset()
	if err := printJSON(&b, j); err != nil {
		t.Fatal(err)
	}
	noControls(t, "lines: status -o json", b.String())
	var back struct {
		Name, Owner, Command, WorkingDir string
		Args                             []string
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("status -o json does not decode: %v\n%s", err, b.String())
	}
	if back.Name != j.Name || back.Owner != j.Owner || back.WorkingDir != j.WorkingDir || back.Command != j.Command ||
		!slices.Equal(back.Args, j.Args) {
		t.Errorf("status -o json decodes to %+v", back)
	}
}

func TestEscapeJSON(t *testing.T) {
	in := map[string]string{"a": "\x1b[2J\u009b\x7f\u202e\U000e0041\u2028ok é\t\"\\"}
	js, err := json.MarshalIndent(in, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	out := escapeJSON(js)
	noControls(t, "lines: escapeJSON", strings.ReplaceAll(string(out), "\t", ""))
	var back map[string]string
	if err := json.Unmarshal(out, &back); err != nil || back["a"] != in["a"] {
		t.Errorf("escapeJSON(%s) = %s, which decodes to %q, %v", js, out, back, err)
	}
	if got := escapeJSON([]byte("\"\xff\"")); string(got) != `"\ufffd"` {
		t.Errorf("escapeJSON of invalid UTF-8 = %s", got)
	}
}

func TestExplainEscapes(t *testing.T) {
	c := &Conn{Addr: "localhost:7443"}
	err := c.explain(status.Error(codes.InvalidArgument, "no such file \"\x1b[2Jcmd\u202e\""))
	if got, want := err.Error(), `no such file "\x1b[2Jcmd\u202e"`; got != want {
		t.Errorf("explain = %q; want %q", got, want)
	}
	for _, r := range err.Error() {
		if unsafeRune(r) && !unicode.IsSpace(r) {
			t.Errorf("explain lets %U through", r)
		}
	}
}

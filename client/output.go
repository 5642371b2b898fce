package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/limits"
)

// outputFlag is -o text|json.
func outputFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "output",
		Aliases: []string{"o"},
		Usage:   "output format: text or json (the API's message as protojson)",
		Value:   "text",
		EnvVars: []string{"TELEHANDLER_OUTPUT"},
	}
}

// outputFormat returns the -o value, checked.
func outputFormat(c *cli.Context) (string, error) {
	switch f := c.String("output"); f {
	case "text", "json":
		return f, nil
	default:
		return "", fmt.Errorf("-o %q: use text or json", f)
	}
}

// printJSON writes m as protojson with every field included, indented
// stably (protojson itself varies its spacing on purpose), with the runes a
// terminal could act on escaped (escapeJSON).
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(escapeJSON(out.Bytes()))
	return err
}

// printJSONArray writes jobs as a JSON array of printJSON's objects.
func printJSONArray(w io.Writer, jobs []*pb.Job) error {
	var out bytes.Buffer
	out.WriteString("[")
	for i, j := range jobs {
		b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(j)
		if err != nil {
			return err
		}
		if i > 0 {
			out.WriteString(",")
		}
		out.Write(b)
	}
	out.WriteString("]")
	var indented bytes.Buffer
	if err := json.Indent(&indented, out.Bytes(), "", "  "); err != nil {
		return err
	}
	indented.WriteByte('\n')
	_, err := indented.WriteTo(w)
	return err
}

// jobArg returns the one JOB argument: a job's name, id, unique id
// prefix, or jobs/ID, passed on as given (the server resolves it within the
// jobs the caller may see).
func jobArg(c *cli.Context) (string, error) {
	switch c.NArg() {
	case 0:
		return "", errors.New("missing JOB: give its name, id, id prefix or jobs/ID (telehandler list shows them)")
	case 1:
	default:
		return "", fmt.Errorf("%s takes one JOB, got %d arguments", c.Command.Name, c.NArg())
	}
	return nonEmptyJob(c.Args().First())
}

// jobArgs returns the JOB arguments (one or more) of a command that takes
// several.
func jobArgs(c *cli.Context) ([]string, error) {
	if c.NArg() == 0 {
		return nil, errors.New("missing JOB: give one or more names, ids, id prefixes or jobs/ID (telehandler list shows them)")
	}
	var names []string
	for _, a := range c.Args().Slice() {
		name, err := nonEmptyJob(a)
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}

func nonEmptyJob(arg string) (string, error) {
	if arg == "" {
		return "", errors.New("empty JOB")
	}
	return arg, nil
}

// describeState says in a few words how a job is or how it ended:
// "RUNNING", "COMPLETED", "FAILED (exit code 3)",
// "FAILED (killed by SIGKILL, stopped)".
func describeState(st *pb.JobStatus) string {
	state := strings.TrimPrefix(st.GetState().String(), "STATE_")
	var why []string
	switch {
	case st.GetState() == pb.State_STATE_RUNNING:
	case st.GetSignal() != 0:
		why = append(why, "killed by "+signalName(st.GetSignal()))
	case st.GetState() == pb.State_STATE_FAILED:
		why = append(why, fmt.Sprintf("exit code %d", st.GetExitCode()))
	}
	switch {
	case st.GetEndReason() == pb.EndReason_END_REASON_SERVER_LOST:
		why = []string{"the server stopped while it ran"}
	case st.GetEndReason() == pb.EndReason_END_REASON_SERVER_SHUTDOWN:
		why = append(why, "stopped by server shutdown")
	case st.GetStopped():
		why = append(why, "stopped")
	}
	if st.GetOomKilled() {
		why = append(why, "out of memory")
	}
	if len(why) == 0 {
		return state
	}
	return state + " (" + strings.Join(why, ", ") + ")"
}

// describeTruncation says why a job's output was truncated and how much
// was lost.
func describeTruncation(st *pb.JobStatus) string {
	var why string
	switch st.GetOutputTruncation() {
	case pb.TruncationReason_TRUNCATION_REASON_WRITE_ERROR:
		why = "the server could not write it to its disk"
		if e := st.GetOutputError(); e != "" {
			why += " (" + safeText(e) + ")" // from the server: escaped
		}
	case pb.TruncationReason_TRUNCATION_REASON_CAP:
		why = "the job wrote more than the server's output cap"
	default: // an older server: only the cap truncated output
		why = "the job wrote more than the server's cap"
	}
	if n := st.GetOutputDroppedBytes(); n > 0 {
		why = fmt.Sprintf("%d bytes dropped: %s", n, why)
	}
	return why
}

// signalName names the common signals; others are "signal N".
func signalName(sig int32) string {
	names := map[int32]string{1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 6: "SIGABRT", 9: "SIGKILL",
		11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM"}
	if n, ok := names[sig]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", sig)
}

// jobExitCode is the exit status a shell would report for the job:
// 0 when it completed, its exit code, 128+N when signal N killed it.
func jobExitCode(st *pb.JobStatus) int {
	switch {
	case st.GetState() == pb.State_STATE_COMPLETED:
		return 0
	case st.GetSignal() > 0:
		return 128 + int(st.GetSignal())
	case st.GetExitCode() > 0 && st.GetExitCode() < 256:
		return int(st.GetExitCode())
	}
	return 1
}

// shellQuote writes a command line so that it can be pasted into sh, and
// safely printed on a terminal: a word with a control character, a bidi
// override or bytes that are not UTF-8 is written $'...' with escapes
// (safeText's), which bash, zsh and ksh read back to the same bytes.
func shellQuote(cmd string, args []string) string {
	words := make([]string, 0, 1+len(args))
	for _, w := range append([]string{cmd}, args...) {
		switch {
		case w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "":
			words = append(words, w)
		case !utf8.ValidString(w) || strings.ContainsFunc(w, unsafeRune):
			words = append(words, "$'"+escapeText(w, '\'')+"'")
		default:
			words = append(words, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
		}
	}
	return strings.Join(words, " ")
}

// printJob writes a job's status as "key: value" lines.
func printJob(w io.Writer, j *pb.Job) error {
	st := j.GetStatus()
	var b strings.Builder
	line := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-9s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	line("name", "%s", safeText(j.GetName()))
	if j.GetDisplayName() != "" {
		line("job name", "%s", safeText(j.GetDisplayName()))
	}
	line("owner", "%s", safeText(j.GetOwner()))
	cmdline := shellQuote(j.GetCommand(), j.GetArgs())
	if st.GetCommandTruncated() {
		cmdline += " (cut: the server keeps 4 KiB of a command line; the job ran with all of it)"
	}
	line("command", "%s", cmdline)
	if j.GetWorkingDir() != "" {
		line("dir", "%s", safeText(j.GetWorkingDir()))
	}
	line("state", "%s", describeState(st))
	if j.GetInit() {
		line("init", "yes (the command runs under a minimal init)")
	}
	switch {
	case j.GetTty():
		line("input", "a terminal (telehandler attach %s)", safeText(j.GetName()))
	case j.GetStdin():
		line("input", "stdin (telehandler attach %s)", safeText(j.GetName()))
	}
	if st.GetStartTime() != nil {
		line("started", "%s", st.GetStartTime().AsTime().Local().Format(time.RFC3339))
	}
	if st.GetEndTime() != nil {
		ran := st.GetEndTime().AsTime().Sub(st.GetStartTime().AsTime()).Round(time.Millisecond)
		line("ended", "%s (ran %v)", st.GetEndTime().AsTime().Local().Format(time.RFC3339), ran)
	}
	l := j.GetLimits()
	line("limits", "cpu %s, memory %s, pids %d, io read %s/s %d IOPS, io write %s/s %d IOPS",
		limits.FormatCPU(l.GetCpuMilli()), limits.FormatBytes(l.GetMemoryBytes()), l.GetPids(),
		limits.FormatBytes(l.GetIoReadBps()), l.GetIoReadIops(), limits.FormatBytes(l.GetIoWriteBps()), l.GetIoWriteIops())
	if j.GetNetwork() {
		line("network", "on, %s/s each way", limits.FormatBytes(l.GetNetworkBps()))
	}
	s := st.GetStats()
	line("usage", "cpu %v, memory %s (peak %s), io read %s, io write %s, oom kills %d",
		s.GetCpuUsage().AsDuration().Round(time.Millisecond), limits.FormatBytes(s.GetMemoryCurrentBytes()),
		limits.FormatBytes(s.GetMemoryPeakBytes()), limits.FormatBytes(s.GetIoReadBytes()), limits.FormatBytes(s.GetIoWriteBytes()), s.GetOomKills())
	out := fmt.Sprintf("%d bytes", st.GetOutputBytes())
	if st.GetOutputTruncated() {
		out += " (truncated: " + describeTruncation(st) + ")"
	}
	line("output", "%s", out)
	_, err := io.WriteString(w, b.String())
	return err
}

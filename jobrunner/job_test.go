package jobrunner

import (
	"errors"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/drrev/telehandler/sandbox"
)

// TestStartRequestValidate proves that requests the sandbox would choke on
// or misread are rejected with ErrInvalidRequest (and invalid limits also
// with sandbox.ErrInvalidLimits), and that ordinary ones pass.
func TestStartRequestValidate(t *testing.T) {
	ok := StartRequest{Command: "sh", Args: []string{"-c", "echo hi"}, Env: []string{"A=1", "B=", "C=x=y"}, Limits: sandbox.DefaultLimits()}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	if err := (StartRequest{Command: "true"}).validate(); err != nil {
		t.Fatalf("minimal request: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*StartRequest)
		limits bool
	}{
		{"empty command", func(r *StartRequest) { r.Command = "" }, false},
		{"NUL in command", func(r *StartRequest) { r.Command = "s\x00h" }, false},
		{"NUL in arg", func(r *StartRequest) { r.Args = []string{"ok", "b\x00d"} }, false},
		{"NUL in env", func(r *StartRequest) { r.Env = []string{"A=b\x00d"} }, false},
		{"NUL in dir", func(r *StartRequest) { r.Dir = "/tmp\x00" }, false},
		{"env without =", func(r *StartRequest) { r.Env = []string{"A=1", "B"} }, false},
		{"env with empty key", func(r *StartRequest) { r.Env = []string{"=1"} }, false},
		{"CPU too small", func(r *StartRequest) { r.Limits.CPUMilli = 1 }, true},
		{"memory too small", func(r *StartRequest) { r.Limits.MemoryBytes = 1 << 10 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.change(&r)
			err := r.validate()
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("validate = %v, want ErrInvalidRequest", err)
			}
			if got := errors.Is(err, sandbox.ErrInvalidLimits); got != tc.limits {
				t.Errorf("errors.Is(err, sandbox.ErrInvalidLimits) = %v, want %v (%v)", got, tc.limits, err)
			}
		})
	}
}

// TestNewID proves ids are 128-bit, lowercase base32 without padding, and
// distinct.
func TestNewID(t *testing.T) {
	re := regexp.MustCompile(`^[a-z2-7]{26}$`)
	seen := make(map[string]bool)
	for range 1000 {
		id, err := newID()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(id) {
			t.Fatalf("id %q is not 26 lowercase base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
}

// TestJobStatusState proves the terminal state rules: COMPLETED only for
// exit 0 without a stop request or an OOM kill, FAILED otherwise; and that the output
// figures come from the log.
func TestJobStatusState(t *testing.T) {
	for _, tc := range []struct {
		name    string
		exit    sandbox.ExitState
		stopped bool
		want    State
	}{
		{"exit 0", sandbox.ExitState{ExitCode: 0}, false, StateCompleted},
		{"exit 1", sandbox.ExitState{ExitCode: 1}, false, StateFailed},
		{"signaled", sandbox.ExitState{ExitCode: -1, Signal: 9}, false, StateFailed},
		{"stopped, exit 0", sandbox.ExitState{ExitCode: 0}, true, StateFailed},
		{"OOM", sandbox.ExitState{ExitCode: -1, Signal: 9, OOMKilled: true}, false, StateFailed},
		// The OOM killer took a child; the command itself still exited 0.
		{"OOM of a child, exit 0", sandbox.ExitState{ExitCode: 0, OOMKilled: true}, false, StateFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, err := CreateOutputLog(filepath.Join(t.TempDir(), "log"), 3)
			if err != nil {
				t.Fatal(err)
			}
			log.Write(Stdout, []byte("abcd"))
			log.Finish()
			j := &job{id: "x", args: []string{"a"}, log: log, ended: true, exit: tc.exit, stopped: tc.stopped}
			st := j.status()
			if st.State != tc.want {
				t.Errorf("State = %v, want %v", st.State, tc.want)
			}
			if st.ExitCode != tc.exit.ExitCode || st.Signal != tc.exit.Signal || st.OOMKilled != tc.exit.OOMKilled || st.Stopped != tc.stopped {
				t.Errorf("status %+v does not reflect exit %+v, stopped %v", st, tc.exit, tc.stopped)
			}
			if st.OutputBytes != 3 || !st.OutputTruncated {
				t.Errorf("OutputBytes, OutputTruncated = %d, %v; want 3, true", st.OutputBytes, st.OutputTruncated)
			}
			st.Args[0] = "changed"
			if j.args[0] != "a" {
				t.Error("Status shares Args with the job")
			}
		})
	}
	if StateRunning.String() != "RUNNING" || StateCompleted.String() != "COMPLETED" || StateFailed.String() != "FAILED" {
		t.Error("State.String")
	}
}

// TestNewConfig proves New rejects a config without a state directory or
// with a negative cap before touching the host.
func TestNewConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a state directory succeeded")
	}
	if _, err := New(Config{StateDir: t.TempDir(), OutputCap: -1}); err == nil {
		t.Error("New with a negative output cap succeeded")
	}
}

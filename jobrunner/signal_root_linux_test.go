package jobrunner

import (
	"errors"
	"sync"
	"syscall"
	"testing"

	"github.com/drrev/telehandler/sandbox"
)

// TestRunnerNames: a name is unique per owner among the jobs the Runner
// holds, running or ended, also when Starts race; other owners may use it;
// a Start that fails frees it.
func TestRunnerNames(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	req := StartRequest{Owner: "alice", Name: "web", Command: "true", Limits: sandbox.DefaultLimits()}

	// A start that cannot exec leaves the name free.
	bad := req
	bad.Command = "/nonexistent/binary"
	if _, err := e.r.Start(ctx, bad); !errors.Is(err, sandbox.ErrExec) {
		t.Fatalf("Start of a missing binary: %v", err)
	}

	// Racing starts of one name: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, taken := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.r.Start(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, ErrNameTaken):
				taken++
			default:
				t.Errorf("Start: %v", err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || taken != 7 {
		t.Fatalf("8 racing starts of one name: %d started, %d refused; want 1 and 7", won, taken)
	}
	var id string
	for _, ref := range e.r.Refs() {
		if ref.Owner == "alice" && ref.Name == "web" {
			id = ref.ID
		}
	}
	st, err := e.r.Wait(ctx, id)
	if err != nil || st.Name != "web" {
		t.Fatalf("Wait: %+v, %v", st, err)
	}
	// The job ended, but is kept: its name stays taken.
	if _, err := e.r.Start(ctx, req); !errors.Is(err, ErrNameTaken) {
		t.Errorf("Start with the name of an ended job: %v, want ErrNameTaken", err)
	}
	other := req
	other.Owner = "bob"
	if _, err := e.r.Start(ctx, other); err != nil {
		t.Errorf("bob's web: %v", err)
	}
}

// TestRunnerSignal: without init a plain sleep (PID 1) ignores SIGTERM;
// with init it ends with 128+15; an ended job is ErrNotRunning.
func TestRunnerSignal(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	st, err := e.r.Start(ctx, StartRequest{Command: "sleep", Args: []string{"1000"}, Init: true, Limits: sandbox.DefaultLimits()})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Init {
		t.Errorf("status %+v does not say init", st)
	}
	if _, err := e.r.Signal(st.ID, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	final, err := e.r.Wait(ctx, st.ID)
	if err != nil || final.ExitCode != 128+int(syscall.SIGTERM) || final.Stopped {
		t.Errorf("after SIGTERM under init: %+v, %v; want exit 143, not stopped", final, err)
	}
	if _, err := e.r.Signal(st.ID, syscall.SIGTERM, false); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal of an ended job: %v, want ErrNotRunning", err)
	}
	if _, err := e.r.Signal("nope", syscall.SIGTERM, false); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Signal of a missing job: %v", err)
	}
	e.checkGone(t, st.ID)
}

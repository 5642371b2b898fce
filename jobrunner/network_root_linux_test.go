package jobrunner

import (
	"errors"
	"testing"
)

// TestRunnerNetworkOff: a runner without a job network refuses a job that
// asks for one, starts nothing and keeps no slot (this needs no network
// change, so it runs on any root host).
func TestRunnerNetworkOff(t *testing.T) {
	e := newRootEnv(t, 0)
	_, err := e.r.Start(testContext(t), StartRequest{Owner: "alice", Command: "true", Network: true,
		Quota: Quota{PerOwner: 1, NetworkPerOwner: 1}})
	if !errors.Is(err, ErrNetworkOff) {
		t.Fatalf("Start with Network on a runner without one: %v, want ErrNetworkOff", err)
	}
	if n := len(e.r.List()); n != 0 {
		t.Errorf("%d jobs kept", n)
	}
	// The refused start gave its slot back: the owner's one job starts.
	st, err := e.r.Start(testContext(t), StartRequest{Owner: "alice", Command: "true", Quota: Quota{PerOwner: 1}})
	if err != nil {
		t.Fatalf("plain job after the refusal: %v", err)
	}
	if _, err := e.r.Wait(testContext(t), st.ID); err != nil {
		t.Fatal(err)
	}
}

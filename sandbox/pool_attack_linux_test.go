package sandbox

import (
	"crypto/rand"
	"strings"
	"testing"
)

// jobState is what a job sees of its own process that a warm shim must
// give it exactly as a cold one does.
const jobStateScript = `id -u; id -g; id -G; hostname; pwd; ` +
	`echo ---status; cat /proc/self/status; ` +
	`echo ---limits; cat /proc/self/limits; ` +
	`echo ---oom; cat /proc/self/oom_score_adj; ` +
	`echo ---fds; ls /proc/self/fd; ` +
	`echo ---cgroup; cat /proc/self/cgroup; ` +
	`echo ---end`

// parseJobState splits jobStateScript's output into the values compared,
// the uid replaced (dynamic uids differ from job to job).
func parseJobState(t *testing.T, out string) map[string]string {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) < 5 {
		t.Fatalf("job state output %q", out)
	}
	uid := lines[0]
	st := map[string]string{
		"gid == uid": map[bool]string{true: "yes", false: "no: " + lines[1]}[lines[1] == uid],
		"groups":     strings.ReplaceAll(lines[2], uid, "U"),
		"hostname":   lines[3],
		"pwd":        strings.ReplaceAll(lines[4], uid, "U"),
	}
	section := ""
	var body []string
	flush := func() {
		if section != "" {
			st[section] = strings.Join(body, "\n")
		}
		body = nil
	}
	for _, l := range lines[5:] {
		if s, ok := strings.CutPrefix(l, "---"); ok {
			flush()
			section = s
			continue
		}
		switch section {
		case "status":
			k, v, _ := strings.Cut(l, ":")
			v = strings.TrimSpace(v)
			switch k {
			case "Uid", "Gid":
				for _, f := range strings.Fields(v) {
					if f != uid {
						t.Errorf("%s: %q, want every id %s", k, v, uid)
					}
				}
			case "Groups", "NoNewPrivs", "Seccomp", "Seccomp_filters", "CapInh", "CapPrm",
				"CapEff", "CapBnd", "CapAmb", "SigBlk", "SigIgn", "Umask", "Speculation_Store_Bypass":
				st["status "+k] = v
			}
		default:
			body = append(body, l)
		}
	}
	flush()
	return st
}

// TestWarmJobMatchesCold: a job from a warm shim runs with everything a cold
// job of a dynamic user has, field by field: its credentials (no group
// left from anyone), no_new_privs, the seccomp filter, capabilities and
// bounding set, no blocked or ignored signals, rlimits, OOM score, umask,
// hostname, directory, cgroup (namespace), and only fds 0-2 (no fd of the
// pool's socket, the spec pipe or another shim).
func TestWarmJobMatchesCold(t *testing.T) {
	ts := newTestSandbox(t)
	spec := asDynamic(sh(jobStateScript))
	cold := ts.startJob(t, Limits{}, spec)
	if cold.pooled {
		t.Fatal("a sandbox without a pool started a job from a warm shim")
	}
	want := parseJobState(t, mustExit0(t, cold))

	cfg := testConfig(t, ts.rec)
	cfg.ShimPool, cfg.ShimPoolLimits = 2, DefaultLimits()
	ts.setConfig(t, cfg)
	for range 3 {
		waitWarmShims(t, ts.Sandbox, 2)
		warm := ts.startJob(t, Limits{}, spec)
		if !warm.pooled {
			t.Fatal("not started from a warm shim")
		}
		got := parseJobState(t, mustExit0(t, warm))
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: warm job %q, cold job %q", k, got[k], v)
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: warm job %q, cold job has none", k, v)
			}
		}
	}
}

// TestWarmShimUIDReuseKeyrings: a dynamic uid a pooled job used is given
// to a later warm shim with nothing of the earlier job's keyrings: the
// user keyring outlives the uid's processes, so the warm shim must clear
// it for its job as a cold start does. (TestKeyringsArePrivate's "same
// uid later" case runs with one uid, which gets no pool.)
func TestWarmShimUIDReuseKeyrings(t *testing.T) {
	ts := newTestSandbox(t)
	key := "telehandler-test-" + randHex(t)
	cfg := testConfig(t, ts.rec)
	cfg.DisableSeccomp = true // the filter refuses the keyring calls altogether
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	// Two uids: the pool holds at most one, so jobs alternate between them.
	cfg.UIDs = UIDRange{First: DefaultUIDRange.First + uint32(b[0])<<8 + uint32(b[1])&^1, Count: 2}
	cfg.ShimPool, cfg.ShimPoolLimits = 1, DefaultLimits()
	ts.setConfig(t, cfg)

	w := waitWarmShims(t, ts.Sandbox, 1)[0]
	alice := ts.startJob(t, Limits{}, asDynamic(helper(t, "addkey", key)))
	if !alice.pooled {
		t.Fatal("alice's job did not start from the warm shim")
	}
	if out := mustExit0(t, alice); !strings.Contains(out, "added") {
		t.Fatalf("alice's job could not add her keys: %q", out)
	}
	reused := false
	for range 4 {
		next := waitWarmShims(t, ts.Sandbox, 1)[0]
		bob := ts.startJob(t, Limits{}, asDynamic(helper(t, "findkey", key)))
		if !bob.pooled {
			t.Fatal("bob's job did not start from the warm shim")
		}
		out := mustExit0(t, bob)
		if !strings.Contains(out, "searched") {
			t.Fatalf("findkey: %q", out)
		}
		if strings.Contains(out, "found") {
			t.Errorf("a later job with uid %d (alice's was %d) found alice's key: %q", next.uid, w.uid, out)
		}
		reused = reused || next.uid == w.uid
	}
	if !reused {
		t.Errorf("no later job got alice's uid %d: the test proved nothing", w.uid)
	}
}

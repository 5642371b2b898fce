package sandbox

import (
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

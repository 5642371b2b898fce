package sandbox

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// Fuzz target of the shim's spec decoding (the shim's half of protocol.go).
// `make test` runs its seed corpus (testdata/fuzz/FuzzDecodeSpec) as an
// ordinary test; `make fuzz` fuzzes it for a while.

// FuzzDecodeSpec gives the shim's decoder any document. It never panics; a
// document it refuses becomes a report the parent reads whole (under
// maxChildErrorSize) and that says which kind of failure it was; a spec it
// accepts has a command, and the parent's encoding of it (as finish writes
// it) decodes to the same spec.
func FuzzDecodeSpec(f *testing.F) {
	uid, gid := uint32(65534), uint32(65534)
	for _, s := range []shimSpec{
		{Spec: Spec{Path: "sh", Args: []string{"-c", "echo hi"}, Env: []string{"PATH=/bin"}, Dir: "/tmp", UID: &uid, GID: &gid}},
		{Spec: Spec{Path: "/bin/true", Hostname: "box"}, CgroupTasks: []string{"/sys/fs/cgroup/cpu/telehandler/j/tasks"}},
		{Spec: Spec{Path: "printf", Args: []string{"\x1b[2J\u202e", ""}}},
		{Spec: Spec{Path: "ls", DynamicUser: true, Image: "alpine"}, View: view{Image: "/srv/alpine", TmpfsSize: 1 << 20,
			Hide: []string{}, Binds: []Bind{{Host: "/srv", Job: "/tmp/srv", Writable: true}},
			Cgroups: []viewCgroup{{Host: "/sys/fs/cgroup/cpu,cpuacct/telehandler/j", Name: "cpu,cpuacct", Links: []string{"cpu", "cpuacct"}}},
			HomeUID: 1879048192, HomeGID: 1879048192, MaskSecrets: true}},
	} {
		data, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"path":""}`))
	f.Add([]byte(`{"path":"x","uid":-1}`))
	f.Add([]byte(`{"path":"env","env":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := decodeSpec(data)
		if err != nil {
			var se *stepError
			if !errors.As(err, &se) || se.kind != kindShim && se.kind != kindExec {
				t.Fatalf("decodeSpec: %v is not a step error of a known kind", err)
			}
			ce, mErr := json.Marshal(childError{Kind: se.kind, Stage: se.stage, Message: se.err.Error()})
			if mErr != nil || len(ce) >= maxChildErrorSize {
				t.Fatalf("the report of %v is %d bytes (%v), the parent reads %d", err, len(ce), mErr, maxChildErrorSize)
			}
			return
		}
		if spec.Path == "" {
			t.Fatal("decodeSpec accepted a spec without a command")
		}
		wire, err := json.Marshal(spec)
		if err != nil {
			t.Fatalf("encode %+v: %v", spec, err)
		}
		back, err := decodeSpec(wire)
		if err != nil {
			t.Fatalf("the parent's encoding of %+v is refused: %v", spec, err)
		}
		// No argument and no tasks file read the same whether nil or
		// empty; no environment (nil: the default one) and an empty one
		// do not.
		for _, s := range []*shimSpec{&spec, &back} {
			if len(s.Args) == 0 {
				s.Args = nil
			}
			if len(s.CgroupTasks) == 0 {
				s.CgroupTasks = nil
			}
		}
		if !reflect.DeepEqual(back, spec) || (back.Env == nil) != (spec.Env == nil) {
			t.Fatalf("spec %+v comes back as %+v", spec, back)
		}
	})
}

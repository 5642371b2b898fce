package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestStartupDependencies: packages whose initialisation is expensive and
// that only some roles need stay out of the binary, whose every process
// (each CLI command, each job's shim) initialises every package linked in.
// protodesc (grpc-go's reflection) unmarshals descriptor.proto's editions
// defaults at start: 7% of a CLI command's CPU; the server's reflection
// service serves compiled-in descriptors instead (server/reflection.go).
func TestStartupDependencies(t *testing.T) {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, pkg := range []string{
		"google.golang.org/protobuf/reflect/protodesc",
		"google.golang.org/protobuf/types/descriptorpb",
		"google.golang.org/grpc/reflection",
	} {
		for _, dep := range strings.Fields(string(out)) {
			if dep == pkg {
				t.Errorf("the binary links %s, whose initialisation every process pays: see server/reflection.go", pkg)
			}
		}
	}
}

package main

import (
	"debug/elf"
	"debug/gosym"
	"os"
	"runtime"
	"testing"
)

// TestStartupDependencies: packages whose initialisation is expensive and
// that only some roles need stay out of the binary, whose every process
// (each CLI command, each job's shim) initialises every package linked in.
// protodesc (grpc-go's reflection) unmarshals descriptor.proto's editions
// defaults at start: 7% of a CLI command's CPU; the server's reflection
// service serves compiled-in descriptors instead (server/reflection.go).
//
// It reads the function table of this test binary, which links every package the
// binary does (and runs where no go command is, as in the cgroup v2 VM).
func TestStartupDependencies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the test binary as ELF")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The function table the runtime itself uses (kept in a stripped
	// binary, which go test links).
	pclntab, text := f.Section(".gopclntab"), f.Section(".text")
	if pclntab == nil || text == nil {
		t.Fatalf("%s has no .gopclntab or .text section", exe)
	}
	data, err := pclntab.Data()
	if err != nil {
		t.Fatal(err)
	}
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		t.Fatalf("function table of %s: %v", exe, err)
	}
	linked := map[string]bool{}
	for _, fn := range table.Funcs {
		linked[fn.PackageName()] = true
	}
	if !linked["google.golang.org/grpc"] {
		t.Fatalf("no grpc symbols in %s: the check reads the wrong names", exe)
	}
	for _, pkg := range []string{
		"google.golang.org/protobuf/reflect/protodesc",
		"google.golang.org/protobuf/types/descriptorpb",
		"google.golang.org/grpc/reflection",
	} {
		if linked[pkg] {
			t.Errorf("the binary links %s, whose initialisation every process pays: see server/reflection.go", pkg)
		}
	}
}

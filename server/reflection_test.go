package server

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

var updateReflection = flag.Bool("update-reflection", false, "rewrite reflection.binpb from the compiled-in descriptors (make proto does)")

// reflectionSetWant is the FileDescriptorSet reflection.binpb must hold:
// the files of the services New registers and their imports, imports
// first.
func reflectionSetWant(t *testing.T) []byte {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range []protoreflect.FileDescriptor{
		pb.File_telehandler_foreman_v1alpha1_foreman_proto,
		healthpb.File_grpc_health_v1_health_proto,
		rpb.File_grpc_reflection_v1_reflection_proto,
	} {
		add(fd)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReflectionDescriptorSet: the descriptors reflection serves are the
// ones compiled in (make proto rewrites them with -update-reflection).
func TestReflectionDescriptorSet(t *testing.T) {
	want := reflectionSetWant(t)
	if *updateReflection {
		if err := os.WriteFile("reflection.binpb", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(reflectionSet, want) {
		t.Fatal("server/reflection.binpb is stale (the .proto changed): run make proto, or go test ./server -run TestReflectionDescriptorSet -update-reflection")
	}
}

// TestReflection: what grpcurl does, through the real server: list the
// services, fetch the file of each (with its imports) and build the
// descriptors from what came; names of methods, messages, fields and enum
// values resolve; an unknown name is NOT_FOUND.
func TestReflection(t *testing.T) {
	ts := startServer(t, nil)
	_, conn := ts.dial(t, ts.clientTLS(ts.client(t, "alice", certgen.RoleUser)))
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	got := &descriptorpb.FileDescriptorSet{}
	keep := func(what string, resp *rpb.ServerReflectionResponse) {
		t.Helper()
		if e := resp.GetErrorResponse(); e != nil {
			t.Fatalf("%s: error %d %s", what, e.GetErrorCode(), e.GetErrorMessage())
		}
		for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			f := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(b, f); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			got.File = append(got.File, f)
		}
	}
	services := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}).GetListServicesResponse().GetService()
	info := ts.server.grpc.GetServiceInfo()
	if len(services) != len(info) {
		t.Errorf("reflection lists %v, the server serves %d services", services, len(info))
	}
	for _, s := range services {
		keep(s.GetName(), ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: s.GetName()}}))
	}
	files, err := protodesc.NewFiles(got)
	if err != nil {
		t.Fatalf("the files reflection sent do not build: %v", err)
	}
	for name, si := range info {
		d, err := files.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			t.Errorf("service %s: %v", name, err)
			continue
		}
		if n := d.(protoreflect.ServiceDescriptor).Methods().Len(); n != len(si.Methods) {
			t.Errorf("service %s: %d methods in its descriptor, %d served", name, n, len(si.Methods))
		}
	}
	for _, sym := range []string{"telehandler.foreman.v1alpha1.Foreman.StartJob", "telehandler.foreman.v1alpha1.StartJobRequest",
		"telehandler.foreman.v1alpha1.StartJobRequest.command", "telehandler.foreman.v1alpha1.STATE_RUNNING", "google.protobuf.Timestamp"} {
		resp := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: sym}})
		if fs := resp.GetFileDescriptorResponse().GetFileDescriptorProto(); len(fs) == 0 {
			t.Errorf("symbol %s: %v", sym, resp.GetErrorResponse())
		}
	}
	for _, req := range []*rpb.ServerReflectionRequest{
		{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "telehandler.Nothing"}},
		{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: "nothing.proto"}},
	} {
		if e := ask(req).GetErrorResponse(); e.GetErrorCode() != 5 || !strings.Contains(e.GetErrorMessage(), "not found") {
			t.Errorf("%v: %v, want NOT_FOUND", req, e)
		}
	}
	resp := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: pb.File_telehandler_foreman_v1alpha1_foreman_proto.Path()}})
	if fs := resp.GetFileDescriptorResponse().GetFileDescriptorProto(); len(fs) == 0 {
		t.Errorf("file by name: %v", resp.GetErrorResponse())
	}
}

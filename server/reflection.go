package server

import (
	"cmp"
	_ "embed"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// gRPC server reflection (grpc.reflection.v1), so that grpcurl works, from
// descriptors compiled in: grpc-go's reflection package builds them at run
// time with protodesc, whose package initialisation (descriptor.proto's
// types, the editions defaults) is 7% of the CPU of every process of this
// binary, the CLI's and each job's shim included, not only the server's.
// reflection.binpb is the FileDescriptorSet of the services served and
// their dependencies; make proto rewrites it (TestReflectionDescriptorSet
// fails while it is stale).

//go:embed reflection.binpb
var reflectionSet []byte

// reflectionServer answers reflection requests from reflectionSet.
type reflectionServer struct {
	rpb.UnimplementedServerReflectionServer
	grpc *grpc.Server // for the names of the services it serves

	once    sync.Once
	files   map[string][]byte   // FileDescriptorProto by file name
	deps    map[string][]string // file name -> the files it imports
	symbols map[string]string   // fully qualified name -> file name
}

// registerReflection registers the reflection service on s.
func registerReflection(s *grpc.Server) {
	rpb.RegisterServerReflectionServer(s, &reflectionServer{grpc: s})
}

// index reads reflectionSet once, at the first request.
func (r *reflectionServer) index() {
	r.once.Do(func() {
		r.files, r.deps, r.symbols = map[string][]byte{}, map[string][]string{}, map[string]string{}
		eachBytes(reflectionSet, func(num protowire.Number, file []byte) {
			if num == 1 { // FileDescriptorSet.file
				r.addFile(file)
			}
		})
	})
}

// addFile indexes one FileDescriptorProto: its name, its imports and every
// name it declares (messages, their fields and nested types, enums and
// their values, services and their methods, extensions).
func (r *reflectionServer) addFile(file []byte) {
	var name, pkg string
	var deps []string
	var decls []func(scope string)
	eachBytes(file, func(num protowire.Number, v []byte) {
		switch num {
		case 1:
			name = string(v)
		case 2:
			pkg = string(v)
		case 3:
			deps = append(deps, string(v))
		case 4: // message_type
			decls = append(decls, func(scope string) { r.addMessage(scope, v, name) })
		case 5: // enum_type
			decls = append(decls, func(scope string) { r.addEnum(scope, v, name) })
		case 6: // service
			decls = append(decls, func(scope string) {
				svc := join(scope, nameOf(v))
				r.symbols[svc] = name
				eachBytes(v, func(num protowire.Number, m []byte) {
					if num == 2 { // method
						r.symbols[join(svc, nameOf(m))] = name
					}
				})
			})
		case 7: // extension
			decls = append(decls, func(scope string) { r.symbols[join(scope, nameOf(v))] = name })
		}
	})
	r.files[name], r.deps[name] = file, deps
	for _, d := range decls {
		d(pkg)
	}
}

func (r *reflectionServer) addMessage(scope string, msg []byte, file string) {
	full := join(scope, nameOf(msg))
	r.symbols[full] = file
	eachBytes(msg, func(num protowire.Number, v []byte) {
		switch num {
		case 2, 6, 8: // field, extension, oneof_decl
			r.symbols[join(full, nameOf(v))] = file
		case 3: // nested_type
			r.addMessage(full, v, file)
		case 4: // enum_type
			r.addEnum(full, v, file)
		}
	})
}

// addEnum indexes an enum and its values, which live in the enum's scope.
func (r *reflectionServer) addEnum(scope string, enum []byte, file string) {
	r.symbols[join(scope, nameOf(enum))] = file
	eachBytes(enum, func(num protowire.Number, v []byte) {
		if num == 2 { // value
			r.symbols[join(scope, nameOf(v))] = file
		}
	})
}

func join(scope, name string) string {
	if scope == "" {
		return name
	}
	return scope + "." + name
}

// nameOf is field 1 (name) of a descriptor.
func nameOf(desc []byte) string {
	var name string
	eachBytes(desc, func(num protowire.Number, v []byte) {
		if num == 1 {
			name = string(v)
		}
	})
	return name
}

// eachBytes calls fn for every length-delimited field of a message, and
// skips the others; it stops at malformed input.
func eachBytes(b []byte, fn func(protowire.Number, []byte)) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return
			}
			fn(num, v)
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return
		}
		b = b[n:]
	}
}

// ServerReflectionInfo answers each request of the stream in turn. A file
// comes with the files it imports, each file once per stream, as grpc-go's
// reflection does.
func (r *reflectionServer) ServerReflectionInfo(stream rpb.ServerReflection_ServerReflectionInfoServer) error {
	r.index()
	sent := map[string]bool{}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the client's end, or a broken stream
		}
		resp := &rpb.ServerReflectionResponse{ValidHost: req.GetHost(), OriginalRequest: req}
		switch m := req.GetMessageRequest().(type) {
		case *rpb.ServerReflectionRequest_FileByFilename:
			r.fileResponse(resp, m.FileByFilename, "file "+m.FileByFilename, sent)
		case *rpb.ServerReflectionRequest_FileContainingSymbol:
			r.fileResponse(resp, r.symbols[m.FileContainingSymbol], "symbol "+m.FileContainingSymbol, sent)
		case *rpb.ServerReflectionRequest_FileContainingExtension:
			resp.MessageResponse = notFound(fmt.Sprintf("extension %d of %s", m.FileContainingExtension.GetExtensionNumber(), m.FileContainingExtension.GetContainingType()))
		case *rpb.ServerReflectionRequest_AllExtensionNumbersOfType:
			if _, ok := r.symbols[m.AllExtensionNumbersOfType]; !ok {
				resp.MessageResponse = notFound("type " + m.AllExtensionNumbersOfType)
				break
			}
			// The API's messages have no extension ranges.
			resp.MessageResponse = &rpb.ServerReflectionResponse_AllExtensionNumbersResponse{
				AllExtensionNumbersResponse: &rpb.ExtensionNumberResponse{BaseTypeName: m.AllExtensionNumbersOfType}}
		case *rpb.ServerReflectionRequest_ListServices:
			var list []*rpb.ServiceResponse
			for name := range r.grpc.GetServiceInfo() {
				list = append(list, &rpb.ServiceResponse{Name: name})
			}
			slices.SortFunc(list, func(a, b *rpb.ServiceResponse) int {
				return cmp.Compare(a.GetName(), b.GetName())
			})
			resp.MessageResponse = &rpb.ServerReflectionResponse_ListServicesResponse{
				ListServicesResponse: &rpb.ListServiceResponse{Service: list}}
		default:
			resp.MessageResponse = &rpb.ServerReflectionResponse_ErrorResponse{ErrorResponse: &rpb.ErrorResponse{
				ErrorCode: int32(codes.InvalidArgument), ErrorMessage: "unknown reflection request"}}
		}
		if err := stream.Send(resp); err != nil {
			return nil
		}
	}
}

// fileResponse answers with the file named name and the files it imports
// that this stream was not sent yet; what names the request, for the
// error.
func (r *reflectionServer) fileResponse(resp *rpb.ServerReflectionResponse, name, what string, sent map[string]bool) {
	if _, ok := r.files[name]; !ok {
		resp.MessageResponse = notFound(what)
		return
	}
	var out [][]byte
	var add func(string)
	add = func(f string) {
		if sent[f] {
			return
		}
		file, ok := r.files[f]
		if !ok {
			return
		}
		sent[f] = true
		out = append(out, file)
		for _, d := range r.deps[f] {
			add(d)
		}
	}
	// The file asked for comes first, even if it was sent before.
	sent[name] = false
	add(name)
	resp.MessageResponse = &rpb.ServerReflectionResponse_FileDescriptorResponse{
		FileDescriptorResponse: &rpb.FileDescriptorResponse{FileDescriptorProto: out}}
}

func notFound(what string) *rpb.ServerReflectionResponse_ErrorResponse {
	return &rpb.ServerReflectionResponse_ErrorResponse{ErrorResponse: &rpb.ErrorResponse{
		ErrorCode: int32(codes.NotFound), ErrorMessage: what + " not found"}}
}

package server

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"

	"github.com/drrev/telehandler/jobrunner"
	"github.com/drrev/telehandler/sandbox"
)

// Sentinel errors of the server itself (the runner and the sandbox have
// their own). They are wrapped by errorf and turned into gRPC codes by
// toStatus, the one place where errors become status codes.
var (
	// errInvalidArgument: a request field is malformed or out of range.
	errInvalidArgument = errors.New("invalid argument")
	// errUnauthenticated: the call carries no verified client certificate.
	errUnauthenticated = errors.New("unauthenticated")
	// errPermissionDenied: the certificate is valid but gives no usable
	// identity or role.
	errPermissionDenied = errors.New("permission denied")
	// errRevoked: the certificate verifies but the deny list refuses it
	// (always with errPermissionDenied).
	errRevoked = errors.New("certificate revoked")
	// errTooManyWatchers: the caller has its most watch streams open.
	errTooManyWatchers = errors.New("too many watch streams")
)

// detailError is a sentinel with a message for the client: Error is the
// message alone, errors.Is finds the sentinel.
type detailError struct {
	sentinel error
	msg      string
}

func (e *detailError) Error() string { return e.msg }
func (e *detailError) Unwrap() error { return e.sentinel }

// errorf returns an error that is sentinel with a formatted message.
func errorf(sentinel error, format string, args ...any) error {
	return &detailError{sentinel: sentinel, msg: fmt.Sprintf(format, args...)}
}

// jobError ties an error to the job name the client asked about, so that
// every "not found" answer reads the same whatever its cause (a missing job
// or a job someone else owns).
type jobError struct {
	name string
	err  error
}

func (e *jobError) Error() string { return e.name + ": " + e.err.Error() }
func (e *jobError) Unwrap() error { return e.err }

// jobErr wraps err with the job name; nil stays nil.
func jobErr(name string, err error) error {
	if err == nil {
		return nil
	}
	return &jobError{name: name, err: err}
}

// notFoundMessage is the one message for a job the caller cannot see.
func notFoundMessage(name string) string { return fmt.Sprintf("job %s not found", name) }

// toStatus maps an error to a gRPC status error. It is the only place that
// chooses codes; unknown errors become Internal, never Unknown.
//
// A command that cannot be executed (sandbox.ErrExec: missing binary, bad
// working directory, permission) is FailedPrecondition: the request is well
// formed, but the host is not in the state it needs (the gRPC guide's
// "should not retry until the system state has been explicitly fixed").
// Limits above the server's maxima are InvalidArgument (the client can ask
// for less); ResourceExhausted is kept for the shares of the server a
// caller may hold (running jobs, watch streams).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	// Already a status (for example from stream.Send): keep it.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Err()
	}
	msg := err.Error()
	var code codes.Code
	reason := pb.ErrorReason_ERROR_REASON_UNSPECIFIED
	switch {
	case errors.Is(err, jobrunner.ErrJobNotFound):
		code = codes.NotFound
		msg = "job not found"
		var je *jobError
		if errors.As(err, &je) {
			msg = notFoundMessage(je.name)
		}
	case errors.Is(err, errInvalidArgument),
		errors.Is(err, jobrunner.ErrInvalidRequest),
		errors.Is(err, sandbox.ErrInvalidLimits),
		errors.Is(err, sandbox.ErrUnknownImage):
		code = codes.InvalidArgument
	case errors.Is(err, errUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, errPermissionDenied):
		code = codes.PermissionDenied
		if errors.Is(err, errRevoked) {
			reason = pb.ErrorReason_ERROR_REASON_CERTIFICATE_REVOKED
		}
	case errors.Is(err, jobrunner.ErrTooManyJobs),
		errors.Is(err, errTooManyWatchers),
		errors.Is(err, jobrunner.ErrStateDirFull),
		errors.Is(err, sandbox.ErrNoUID),
		errors.Is(err, jobrunner.ErrTooManyNetworkJobs):
		code = codes.ResourceExhausted
	case errors.Is(err, jobrunner.ErrNetworkOff):
		code = codes.FailedPrecondition
		msg = "this server does not give jobs a network: start it with serve --network (and --network-uplink IFACE), or run the job without --network"
	case errors.Is(err, jobrunner.ErrNameTaken):
		code = codes.AlreadyExists
	case errors.Is(err, jobrunner.ErrNotRunning):
		code = codes.FailedPrecondition
		var je *jobError
		if errors.As(err, &je) {
			msg = fmt.Sprintf("job %s is not running: it already ended", je.name)
		}
	case errors.Is(err, jobrunner.ErrRunning):
		code = codes.FailedPrecondition
		var je *jobError
		if errors.As(err, &je) {
			msg = fmt.Sprintf("job %s is running: stop it first, or remove it with force (telehandler rm --force)", je.name)
		}
	case errors.Is(err, jobrunner.ErrNoInput),
		errors.Is(err, jobrunner.ErrInputBusy):
		code = codes.FailedPrecondition
	case errors.Is(err, sandbox.ErrExec):
		code = codes.FailedPrecondition
		switch {
		case errors.Is(err, sandbox.ErrCommandNotFound):
			reason = pb.ErrorReason_ERROR_REASON_COMMAND_NOT_FOUND
		case errors.Is(err, sandbox.ErrNotExecutable):
			reason = pb.ErrorReason_ERROR_REASON_COMMAND_NOT_EXECUTABLE
		}
	case errors.Is(err, jobrunner.ErrInvalidOffset):
		code = codes.OutOfRange
	case errors.Is(err, jobrunner.ErrShuttingDown):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	default: // sandbox.ErrShim, sandbox.ErrNoController, corrupt logs, I/O...
		code = codes.Internal
	}
	st := status.New(code, msg)
	if reason != pb.ErrorReason_ERROR_REASON_UNSPECIFIED {
		// The cause for clients that act on it (start --watch exits 127
		// or 126, as a shell does), as AIP-193's ErrorInfo.
		if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason.String(), Domain: errorDomain}); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// errorDomain is the domain of the ErrorInfo details of the server's
// errors (the API's proto package); their reasons are the API's
// ErrorReason names.
var errorDomain = string(pb.File_telehandler_foreman_v1alpha1_foreman_proto.Package())

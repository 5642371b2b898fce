package client

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ExitError ends a command with a given exit status. An empty Msg prints
// nothing: watch uses it to exit with the job's own status.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// explain turns an error of a call to the server into the message the user
// reads: the server's status message, and a hint naming the fix for the
// common failures. Lines after the first are hints.
func (c *Conn) explain(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg, hint := st.Message(), ""
	switch st.Code() {
	case codes.Unavailable:
		msg, hint = c.connectionHint(msg)
	case codes.PermissionDenied:
		hint = "the server accepts certificates with a role: make one with telehandler certgen --user NAME[:user|admin]"
	case codes.Unauthenticated:
		hint = "present a client certificate with --cert and --key (TELEHANDLER_CERT, TELEHANDLER_KEY)"
	case codes.NotFound:
		hint = "telehandler list shows the jobs you can see"
	case codes.DeadlineExceeded:
		hint = fmt.Sprintf("the server at %s did not answer in time", c.Addr)
	case codes.ResourceExhausted, codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.Canceled:
	default:
		msg = st.Code().String() + ": " + msg
	}
	if hint != "" {
		msg += "\nhint: " + hint
	}
	return errors.New(msg)
}

// connectionHint explains why a connection failed: the server is not
// there, its certificate is not trusted, or it refused ours.
func (c *Conn) connectionHint(msg string) (string, string) {
	m := "cannot reach the server at " + c.Addr + ": " + msg
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return m, "the server's certificate is not signed by the CA in --ca (TELEHANDLER_CA); use the ca.crt of the server's deployment"
	case strings.Contains(msg, "certificate is valid for"), strings.Contains(msg, "doesn't contain any IP SANs"):
		return m, "the host of --addr must be a name in the server's certificate (localhost, 127.0.0.1, ::1 or a telehandler certgen --host)"
	case strings.Contains(msg, "certificate has expired"), strings.Contains(msg, "not yet valid"):
		return m, "a certificate has expired or is not valid yet; make new ones with telehandler certgen"
	case strings.Contains(msg, "remote error: tls:"):
		return m, "the server refused your client certificate (--cert, TELEHANDLER_CERT): it must be signed by the server's CA, unexpired, and made by telehandler certgen --user NAME"
	case strings.Contains(msg, "shutting down"):
		return m, "the server is shutting down"
	}
	return m, fmt.Sprintf("is the server running at %s? (--addr, TELEHANDLER_ADDR)", c.Addr)
}

// isCanceled reports whether err is the end of the caller's own context.
func isCanceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled)
}

package client

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
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
	// The message may echo what someone sent (a command, a name).
	msg, hint := safeText(st.Message()), ""
	switch st.Code() {
	case codes.Unavailable:
		msg, hint = c.connectionHint(msg)
	case codes.PermissionDenied:
		hint = "the server accepts certificates with a role: make one with telehandler certgen --user NAME[:user|admin]"
		if reasonOf(err) == pb.ErrorReason_ERROR_REASON_CERTIFICATE_REVOKED {
			hint = "the server's operator no longer accepts this certificate (--cert, " + c.certSource + "): ask them for a new one (telehandler certgen --renew NAME with the deployment's CA)"
		}
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
	case strings.Contains(msg, "remote error: tls:"), strings.Contains(msg, "broken pipe"), strings.Contains(msg, "connection reset by peer"):
		// TLS 1.3: the server checks the client certificate after the
		// client finished its handshake, so its refusal arrives as an
		// alert or a closed connection on the first write.
		return m, "the server refused your client certificate (--cert, " + c.certSource + "): it must be signed by the server's CA (not another deployment's), unexpired, and made by telehandler certgen --user NAME; the server's log says which"
	case strings.Contains(msg, "shutting down"):
		return m, "the server is shutting down"
	case strings.Contains(msg, "connection refused"):
		return m, fmt.Sprintf("nothing listens at %s: is the server running there? (the address is from %s)", c.Addr, c.addrSource)
	case strings.Contains(msg, "handshake") && strings.Contains(msg, "deadline exceeded"):
		return m, fmt.Sprintf("%s accepted the connection but did not complete a TLS handshake within --timeout %v: is it a Telehandler server (the address is from %s)? A loaded server may need a longer --timeout", c.Addr, c.Timeout, c.addrSource)
	case strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "deadline exceeded"):
		return m, fmt.Sprintf("no answer from %s within --timeout %v: check the address (from %s) and any firewall between", c.Addr, c.Timeout, c.addrSource)
	case strings.Contains(msg, "no such host"):
		return m, fmt.Sprintf("the host of the address (from %s) does not resolve here", c.addrSource)
	}
	return m, fmt.Sprintf("is the server running at %s? (the address is from %s)", c.Addr, c.addrSource)
}

// reasonOf returns the ErrorInfo reason the server attached to a status
// error (see the API's ErrorReason), or UNSPECIFIED.
func reasonOf(err error) pb.ErrorReason {
	st, ok := status.FromError(err)
	if !ok {
		return pb.ErrorReason_ERROR_REASON_UNSPECIFIED
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return pb.ErrorReason(pb.ErrorReason_value[info.GetReason()])
		}
	}
	return pb.ErrorReason_ERROR_REASON_UNSPECIFIED
}

// errorDomain is the ErrorInfo domain of the server's errors: the API's
// proto package.
var errorDomain = string(pb.File_telehandler_foreman_v1alpha1_foreman_proto.Package())

// isCanceled reports whether err is the end of the caller's own context.
func isCanceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled)
}

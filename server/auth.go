package server

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// Identity is who makes a call: the Common Name of the verified client
// certificate and the role certgen wrote into it.
type Identity struct {
	Name string
	Role string
}

// isAdmin reports whether the identity may see and control every job.
func (id Identity) isAdmin() bool { return id.Role == certgen.RoleAdmin }

// canSee reports whether the identity may see a job owned by owner.
func (id Identity) canSee(owner string) bool { return id.isAdmin() || id.Name == owner }

type identityKey struct{}

// withIdentity returns ctx carrying id.
func withIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// identityFrom returns the identity the interceptors put into ctx.
func identityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// authenticate derives the caller's identity from the verified client
// certificate of the connection, and nothing else, and refuses a
// certificate st no longer accepts (see tlsState.refuse).
func authenticate(ctx context.Context, st *tlsState) (Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, errorf(errUnauthenticated, "no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, errorf(errUnauthenticated, "connection is not TLS")
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return Identity{}, errorf(errUnauthenticated, "no verified client certificate")
	}
	if err := st.refuse(chains[0]); err != nil {
		return Identity{}, err
	}
	if leaf := chains[0][0]; time.Now().After(leaf.NotAfter) {
		return Identity{}, expired(leaf)
	}
	return identityOf(chains[0][0])
}

// expired is the error for a client certificate past its end, which the
// handshake accepted while it was valid: a connection, and a stream on it,
// do not outlive the certificate.
func expired(leaf *x509.Certificate) error {
	return errorf(errRevokedCert, "client certificate of %q (serial %s) expired at %s: renew it (telehandler certgen --renew %s)",
		leaf.Subject.CommonName, certgen.SerialHex(leaf.SerialNumber), leaf.NotAfter.UTC().Format(time.RFC3339), leaf.Subject.CommonName)
}

// clientChain is the verified chain of the connection's client
// certificate, after authenticate accepted it.
func clientChain(ctx context.Context) []*x509.Certificate {
	p, _ := peer.FromContext(ctx)
	return p.AuthInfo.(credentials.TLSInfo).State.VerifiedChains[0]
}

// identityOf reads the identity out of a verified client certificate.
func identityOf(cert *x509.Certificate) (Identity, error) {
	name := cert.Subject.CommonName
	if name == "" {
		return Identity{}, errorf(errPermissionDenied, "client certificate has no common name")
	}
	role, err := certgen.RoleOf(cert)
	if err != nil {
		return Identity{}, errorf(errPermissionDenied, "client certificate of %q carries no valid role: %v", name, err)
	}
	switch role {
	case certgen.RoleUser, certgen.RoleAdmin:
	default:
		return Identity{}, errorf(errPermissionDenied, "client certificate of %q has unknown role %q", name, role)
	}
	return Identity{Name: name, Role: role}, nil
}

// named is implemented by every request that addresses one job.
type named interface{ GetName() string }

// jobOf returns the job name a request or response is about, if any.
func jobOf(m any) string {
	switch m := m.(type) {
	case named:
		return m.GetName()
	case interface{ GetJob() *pb.Job }:
		return m.GetJob().GetName()
	}
	return ""
}

// unaryInterceptor authenticates the caller, puts the identity into the
// context, runs the handler, maps its error to a status and logs the call.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	id, err := authenticate(ctx, s.tls.Load())
	var resp any
	if err == nil {
		resp, err = handler(withIdentity(ctx, id), req)
	}
	err = toStatus(err)
	job := jobOf(req)
	if job == "" && err == nil {
		job = jobOf(resp)
	}
	s.logCall(ctx, id, info.FullMethod, job, start, err)
	return resp, err
}

// streamInterceptor is unaryInterceptor for streaming calls.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	id, err := authenticate(ss.Context(), s.tls.Load())
	w := &identityStream{ServerStream: ss}
	if err == nil {
		// A stream (watch) may outlive a reload that refuses its
		// certificate: Reload ends it then (see revokeStreams).
		ctx, cancel := context.WithCancelCause(ss.Context())
		leaf := clientChain(ctx)[0]
		ctx, stopExpiry := context.WithDeadlineCause(ctx, leaf.NotAfter, expired(leaf))
		defer stopExpiry()
		untrack := s.trackStream(clientChain(ctx), cancel)
		// A reload between authenticate and trackStream is seen here.
		if err = s.tls.Load().refuse(clientChain(ctx)); err == nil {
			w.ctx = withIdentity(ctx, id)
			err = handler(srv, w)
		}
		// A stream that ended because a reload refused it, or its
		// certificate expired, says why (one that completed meanwhile
		// stays a success).
		if cause := context.Cause(ctx); err != nil && errors.Is(cause, errRevoked) {
			err = cause
		}
		untrack()
		cancel(nil)
	}
	err = toStatus(err)
	s.logCall(ss.Context(), id, info.FullMethod, w.job, start, err)
	return err
}

// identityStream carries the identity in its context and remembers which
// job the request was about, for the log.
type identityStream struct {
	grpc.ServerStream
	ctx context.Context
	job string
}

func (w *identityStream) Context() context.Context { return w.ctx }

func (w *identityStream) RecvMsg(m any) error {
	err := w.ServerStream.RecvMsg(m)
	if err == nil && w.job == "" {
		w.job = jobOf(m)
	}
	return err
}

// logCall writes one structured line per call: who, what, outcome.
func (s *Server) logCall(ctx context.Context, id Identity, method, job string, start time.Time, err error) {
	st := status.Convert(err)
	attrs := []slog.Attr{
		slog.String("rpc", method),
		slog.String("user", id.Name),
		slog.String("role", id.Role),
		slog.String("code", st.Code().String()),
		slog.Duration("duration", time.Since(start)),
	}
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && info.State.DidResume {
			// The connection resumed a TLS session (session.go).
			attrs = append(attrs, slog.Bool("tls_resumed", true))
		}
	}
	if job != "" {
		attrs = append(attrs, slog.String("job", job))
	}
	level := slog.LevelInfo
	if err != nil {
		attrs = append(attrs, slog.String("error", st.Message()))
		level = slog.LevelWarn
	}
	s.log.LogAttrs(ctx, level, "rpc", attrs...)
}

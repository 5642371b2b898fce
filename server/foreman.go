package server

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/internal/watchcodec"
	"github.com/drrev/telehandler/jobrunner"
	"github.com/drrev/telehandler/sandbox"
)

// Bounds on requests. Linux itself refuses a single argument or environment
// string of 128 KiB (MAX_ARG_STRLEN, which counts its terminating NUL) or
// more, and an argv+envp much over 2 MiB; we refuse earlier and with a clear
// message.
const (
	maxArgs         = 10_000
	maxEnv          = 10_000
	maxStringBytes  = 128<<10 - 1
	maxCommandBytes = 1 << 20 // command, args, env and dir together
	maxGracePeriod  = 5 * time.Minute
	// maxChunkBytes is the most output data in one WatchJobOutput message,
	// and the size the runner merges output into. The server never copies
	// a chunk into gRPC's buffer pool (watchcodec), so the pool's tiers
	// no longer decide it; two other things do. Memory: a watcher holds
	// its merge buffer and, in gRPC, the chunks sent but not yet written
	// (Send blocks once 64 KiB are queued); with 64 KiB chunks 100
	// watchers of one job grew the server by 63.6 MiB, against 48-54 with
	// 32 KiB ones, too close to the fan-out bench's 64 MiB bound. Frames:
	// gRPC sends a message in HTTP/2 DATA frames of at most 16 KiB, and the
	// message is the data plus its fields and the 5-byte gRPC prefix (at
	// most 22 bytes; TestWatchFrameIsProto checks it), so 32 KiB of data
	// made a third frame of a few bytes per message: 50% more frames to
	// write, read and hand over, for 2 bytes in 1,000. 64 bytes less
	// keeps every full message in two frames.
	maxChunkBytes = 32<<10 - 64
)

// foreman implements the Foreman service on a JobRunner. Every method runs
// behind the interceptors, so the context holds the caller's identity and
// returned errors are mapped to status codes there.
type foreman struct {
	pb.UnimplementedForemanServer

	runner        JobRunner
	log           *slog.Logger
	defaultLimits sandbox.Limits
	maxLimits     sandbox.Limits
	uid, gid      *uint32
	dynamicUsers  bool

	// The running-jobs cap (see Config): quota turns it into each start's
	// jobrunner.Quota; the runner counts the jobs and decides.
	maxJobs, maxJobsPerUser, adminReserved int
	// maxNetJobs is Config.MaxNetworkJobsPerUser.
	maxNetJobs int

	// maxWatchers is the most WatchJobOutput streams one identity may
	// have open at once.
	maxWatchers int
	// watchMu guards watchers, the open watch streams per identity name
	// (names with none have no entry).
	watchMu  sync.Mutex
	watchers map[string]int
}

// caller returns the identity the interceptor put into ctx.
func caller(ctx context.Context) (Identity, error) {
	id, ok := identityFrom(ctx)
	if !ok {
		return Identity{}, errorf(errUnauthenticated, "no identity")
	}
	return id, nil
}

// lookup resolves a reference to a job the caller may see (see
// resolveJob) and returns the caller and the job's current status. A job
// owned by someone else is reported exactly like a job that does not
// exist.
func (f *foreman) lookup(ctx context.Context, name string) (Identity, jobrunner.Status, error) {
	who, err := caller(ctx)
	if err != nil {
		return Identity{}, jobrunner.Status{}, err
	}
	ref, err := parseJobRef(name)
	if err != nil {
		return Identity{}, jobrunner.Status{}, err
	}
	// The common case first: a full id (resolveJob's first rule), found
	// without copying every job's reference.
	if st, err := f.runner.Status(ref.s); err == nil && who.canSee(st.Owner) {
		return who, st, nil
	}
	id, err := resolveJob(f.runner.Refs(), who, name, ref)
	if err != nil {
		return Identity{}, jobrunner.Status{}, err
	}
	st, err := f.runner.Status(id)
	if err != nil {
		return Identity{}, jobrunner.Status{}, jobErr(name, err)
	}
	if !who.canSee(st.Owner) {
		return Identity{}, jobrunner.Status{}, jobErr(name, jobrunner.ErrJobNotFound)
	}
	return who, st, nil
}

func (f *foreman) StartJob(ctx context.Context, req *pb.StartJobRequest) (*pb.StartJobResponse, error) {
	who, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateStart(req); err != nil {
		return nil, err
	}
	limits, err := resolveLimits(req.GetLimits(), f.defaultLimits, f.maxLimits)
	if err != nil {
		return nil, err
	}
	st, err := f.runner.Start(ctx, jobrunner.StartRequest{
		Owner:   who.Name,
		Name:    req.GetDisplayName(),
		Init:    req.GetInit(),
		Command: req.GetCommand(),
		Args:    req.GetArgs(),
		Env:     req.GetEnv(),
		Dir:     req.GetWorkingDir(),
		Limits:  limits,
		UID:     f.uid,
		GID:     f.gid,
		Quota:   f.quota(who),
		// stream (issue 10.6)
		MergeOutput: req.GetMergeOutput(),
		// interactive (issue 12)
		Stdin:   req.GetStdin() || req.GetTty(),
		TTY:     req.GetTty(),
		TTYRows: uint16(req.GetTtySize().GetRows()),
		TTYCols: uint16(req.GetTtySize().GetCols()),

		DynamicUser: f.dynamicUsers,
		Image:       req.GetImage(),
		// net (issue 13)
		Network: req.GetNetwork(),
	})
	if qe := (*jobrunner.QuotaError)(nil); errors.As(err, &qe) {
		return nil, f.tooManyJobs(who, qe)
	}
	if err != nil {
		return nil, err
	}
	f.log.Info("job started", "job", jobName(st.ID), "owner", st.Owner, "display_name", st.Name, "command", clip(st.Command),
		"args", len(st.Args), "limits", limits)
	return &pb.StartJobResponse{Job: jobToProto(st)}, nil
}

// quota is who's share of the running-jobs cap. An admin may start a job
// while fewer than maxJobs run; a user while fewer than maxJobs minus the
// admins' reserve run in all (admins' jobs count too) and fewer than
// maxJobsPerUser of the user's own. So users together never take the
// reserved slots, and one user never takes every slot users have.
func (f *foreman) quota(who Identity) jobrunner.Quota {
	if who.isAdmin() {
		return jobrunner.Quota{Total: f.maxJobs, NetworkPerOwner: f.maxNetJobs}
	}
	return jobrunner.Quota{Total: f.maxJobs - f.adminReserved, PerOwner: f.maxJobsPerUser, NetworkPerOwner: f.maxNetJobs}
}

// tooManyJobs says which share of the cap refused who's job, with the
// counts and the serve flag behind it (the runner's error knows neither
// roles nor flags).
func (f *foreman) tooManyJobs(who Identity, qe *jobrunner.QuotaError) error {
	switch {
	case qe.PerOwner:
		return errorf(jobrunner.ErrTooManyJobs, "%s already runs %d jobs, the most one user may run at once (serve --max-jobs-per-user %d); stop one or try later",
			who.Name, qe.Owned, qe.Limit)
	case who.isAdmin():
		return errorf(jobrunner.ErrTooManyJobs, "the server already runs its maximum of %d jobs (serve --max-jobs); stop some or try later", qe.Limit)
	}
	return errorf(jobrunner.ErrTooManyJobs, "the server already runs %d jobs, the most it runs while users start jobs (serve --max-jobs %d keeps %d for admins); %s runs %d of them; try later",
		qe.Total, f.maxJobs, f.adminReserved, who.Name, qe.Owned)
}

func (f *foreman) StopJob(ctx context.Context, req *pb.StopJobRequest) (*pb.StopJobResponse, error) {
	grace := time.Duration(0)
	if g := req.GetGracePeriod(); g != nil {
		if err := g.CheckValid(); err != nil {
			return nil, errorf(errInvalidArgument, "grace_period: %v", err)
		}
		grace = g.AsDuration()
		if grace < 0 || grace > maxGracePeriod {
			return nil, errorf(errInvalidArgument, "grace_period %v is outside [0, %v]", grace, maxGracePeriod)
		}
	}
	who, job, err := f.lookup(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	st, err := f.runner.Stop(ctx, job.ID, grace)
	if err != nil {
		return nil, jobErr(req.GetName(), err)
	}
	f.log.Info("job stopped", "job", req.GetName(), "owner", st.Owner, "by", who.Name,
		"exit_code", st.ExitCode, "signal", st.Signal)
	return &pb.StopJobResponse{Job: jobToProto(st)}, nil
}

func (f *foreman) GetJobStatus(ctx context.Context, req *pb.GetJobStatusRequest) (*pb.GetJobStatusResponse, error) {
	_, st, err := f.lookup(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &pb.GetJobStatusResponse{Job: jobToProto(st)}, nil
}

func (f *foreman) WatchJobOutput(req *pb.WatchJobOutputRequest, stream grpc.ServerStreamingServer[pb.WatchJobOutputResponse]) error {
	ctx := stream.Context()
	if req.GetOffset() < 0 {
		return errorf(errInvalidArgument, "offset %d is negative", req.GetOffset())
	}
	if req.TailLines != nil && req.GetTailLines() < 0 {
		return errorf(errInvalidArgument, "tail_lines %d is negative", req.GetTailLines())
	}
	who, job, err := f.lookup(ctx, req.GetName())
	if err != nil {
		return err
	}
	if err := f.addWatcher(who); err != nil {
		return err
	}
	defer f.removeWatcher(who)
	from := req.GetOffset()
	// skip[s] is where stream s starts being sent (tail_per_stream).
	var skip [3]int64
	if req.TailLines != nil {
		// The offset of the last lines is found by reading the log
		// backwards on the server: no replay of the rest over the network.
		if !req.GetTailPerStream() {
			from, err = f.runner.TailOffset(job.ID, req.GetTailLines(), 0)
		} else {
			for _, s := range []jobrunner.Stream{jobrunner.Stdout, jobrunner.Stderr} {
				if skip[s], err = f.runner.TailOffset(job.ID, req.GetTailLines(), s); err != nil {
					break
				}
			}
			from = min(skip[jobrunner.Stdout], skip[jobrunner.Stderr])
		}
		if err != nil {
			return jobErr(req.GetName(), err)
		}
	}
	// With no_follow the stream ends at the output there is now (a job
	// that has ended ends its stream there anyway, with its status).
	end := int64(-1)
	if req.GetNoFollow() && job.Running() {
		end = job.OutputBytes
		if end <= from {
			return stream.Send(&pb.WatchJobOutputResponse{Offset: from, Job: jobToProto(job)})
		}
	}
	// Each chunk goes to the wire from the follower's buffer, without a
	// copy: watchcodec (installed with ForceServerCodecV2) encodes only
	// the fields around the data, and the transport holds the retained
	// buffer until it wrote it (Chunk.Retain, released through the
	// mem.Buffer's pool). A stream holds few such buffers: Send blocks
	// once gRPC's per-stream write quota (64 KiB) is spent, so at most one
	// chunk beyond it waits for the wire.
	var frame watchcodec.Frame
	st, err := f.runner.WatchChunks(ctx, job.ID, from, maxChunkBytes, func(c jobrunner.Chunk) error {
		if c.Dropped > 0 {
			// A gap: output the server could not write was dropped here.
			if end >= 0 && c.Offset >= end {
				return errWatchEnd
			}
			return stream.Send(&pb.WatchJobOutputResponse{Offset: c.Offset, DroppedBytes: c.Dropped})
		}
		chunkEnd := c.Offset + int64(len(c.Data))
		lo, hi := int64(0), int64(len(c.Data))
		if end >= 0 && chunkEnd > end {
			hi = max(end-c.Offset, 0)
		}
		if int(c.Stream) < len(skip) {
			lo = min(max(skip[c.Stream]-c.Offset, 0), hi)
		}
		if lo < hi {
			// The runner's chunks are at most maxChunkBytes; split anyway
			// should a runner hand out more.
			data := retained(c)
			defer data.Free()
			for lo < hi {
				n := min(hi-lo, maxChunkBytes)
				frame = watchcodec.Frame{
					Stream: streamToProto(c.Stream),
					Offset: c.Offset + lo,
					Data:   mem.BufferSlice{data.Slice(int(lo), int(lo+n))},
				}
				err := stream.SendMsg(&frame)
				frame.Release()
				if err != nil {
					return err
				}
				lo += n
			}
		}
		if end >= 0 && chunkEnd >= end {
			return errWatchEnd
		}
		return nil
	})
	if errors.Is(err, errWatchEnd) {
		// no_follow, the output there was is sent: the last message says
		// how the job is now (RUNNING, or how it ended since).
		now, err := f.runner.Status(job.ID)
		if err != nil {
			return jobErr(req.GetName(), err)
		}
		return stream.Send(&pb.WatchJobOutputResponse{Offset: end, Job: jobToProto(now)})
	}
	if err != nil {
		return jobErr(req.GetName(), err)
	}
	// The job ended and every byte was sent: the last message says how it
	// ended, so that the watcher needs no second call (which could find
	// the server gone when it stopped the job on shutdown, or the job
	// removed).
	return stream.Send(&pb.WatchJobOutputResponse{Offset: st.OutputBytes, Job: jobToProto(st)})
}

// addWatcher counts one more watch stream of who's, unless who has the
// most already.
func (f *foreman) addWatcher(who Identity) error {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	if n := f.watchers[who.Name]; n >= f.maxWatchers {
		return errorf(errTooManyWatchers, "%s already watches %d streams, the most one identity may watch at once (serve --max-watchers-per-user %d); end one first",
			who.Name, n, f.maxWatchers)
	}
	if f.watchers == nil {
		f.watchers = make(map[string]int)
	}
	f.watchers[who.Name]++
	return nil
}

func (f *foreman) removeWatcher(who Identity) {
	f.watchMu.Lock()
	defer f.watchMu.Unlock()
	if f.watchers[who.Name]--; f.watchers[who.Name] <= 0 {
		delete(f.watchers, who.Name)
	}
}

// errWatchEnd ends a no_follow watch once it sent the output there was.
var errWatchEnd = errors.New("end of the output asked for")

// SignalJob sends a signal from the allow-list (parseSignal) to a running
// job's command, or to every process of the job.
func (f *foreman) SignalJob(ctx context.Context, req *pb.SignalJobRequest) (*pb.SignalJobResponse, error) {
	sig, err := parseSignal(req.GetSignal())
	if err != nil {
		return nil, err
	}
	who, job, err := f.lookup(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	st, err := f.runner.Signal(job.ID, sig, req.GetAll())
	if err != nil {
		return nil, jobErr(req.GetName(), err)
	}
	f.log.Info("job signalled", "job", jobName(st.ID), "owner", st.Owner, "by", who.Name,
		"signal", signalName(sig), "all", req.GetAll())
	return &pb.SignalJobResponse{Job: jobToProto(st)}, nil
}

// validateStart checks a StartJobRequest's fields before anything runs.
func validateStart(req *pb.StartJobRequest) error {
	if req.GetCommand() == "" {
		return errorf(errInvalidArgument, "command is empty")
	}
	if n := len(req.GetArgs()); n > maxArgs {
		return errorf(errInvalidArgument, "%d arguments are more than the %d allowed", n, maxArgs)
	}
	if n := len(req.GetEnv()); n > maxEnv {
		return errorf(errInvalidArgument, "%d environment entries are more than the %d allowed", n, maxEnv)
	}
	total := 0
	check := func(what, s string) error {
		total += len(s) + 1
		if len(s) > maxStringBytes {
			return errorf(errInvalidArgument, "%s is %d bytes, more than the %d allowed", what, len(s), maxStringBytes)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return errorf(errInvalidArgument, "%s contains a NUL byte", what)
		}
		return nil
	}
	if err := check("command", req.GetCommand()); err != nil {
		return err
	}
	for _, a := range req.GetArgs() {
		if err := check("an argument", a); err != nil {
			return err
		}
	}
	for _, e := range req.GetEnv() {
		if err := check("an environment entry", e); err != nil {
			return err
		}
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return errorf(errInvalidArgument, "environment entry %q is not KEY=VALUE", clip(e))
		}
	}
	if d := req.GetWorkingDir(); d != "" {
		if err := check("working_dir", d); err != nil {
			return err
		}
		if !path.IsAbs(d) {
			return errorf(errInvalidArgument, "working_dir %q is not an absolute path", clip(d))
		}
	}
	if err := validateWindowSize("tty_size", req.GetTtySize()); err != nil {
		return err
	}
	if n := req.GetDisplayName(); n != "" {
		// The rule is the runner's; checked here so that a bad name is
		// refused before the job is counted against the cap.
		if err := jobrunner.ValidateName(n); err != nil {
			return errorf(errInvalidArgument, "display_name: %v", err)
		}
	}
	if total > maxCommandBytes {
		return errorf(errInvalidArgument, "command, arguments and environment are %d bytes, more than the %d allowed", total, maxCommandBytes)
	}
	return nil
}

// retained returns c's data as a mem.Buffer holding a reference of its own
// (Chunk.Retain), released when the last holder frees it.
func retained(c jobrunner.Chunk) mem.Buffer {
	data, release := c.Retain()
	return mem.NewBuffer(&data, releasePool(release))
}

// releasePool is the "pool" of one retained chunk: gRPC puts the buffer
// back when it no longer needs it, which releases the chunk.
type releasePool func()

func (releasePool) Get(int) *[]byte { panic("server: releasePool only takes buffers back") }
func (r releasePool) Put(*[]byte)   { r() }

package server

import (
	"context"
	"syscall"
	"time"

	"github.com/drrev/telehandler/jobrunner"
)

// JobRunner is what the server needs from the job library: the methods of
// *jobrunner.Runner it calls. It exists so that authorization, validation
// and error mapping can be tested against a fake without root.
type JobRunner interface {
	// Start refuses a job its request's Quota has no room for with a
	// *jobrunner.QuotaError: the runner holds the one count of running
	// jobs.
	Start(ctx context.Context, req jobrunner.StartRequest) (jobrunner.Status, error)
	Stop(ctx context.Context, id string, grace time.Duration) (jobrunner.Status, error)
	Status(id string) (jobrunner.Status, error)
	// List returns every job's status, oldest first (ties by id).
	List() []jobrunner.Status
	// ListPage returns one page of the jobs a query selects, newest first,
	// and whether more follow.
	ListPage(q jobrunner.ListQuery) ([]jobrunner.Status, bool)
	// Remove removes an ended job (status and output); a running one only
	// with force, which stops it first (else jobrunner.ErrRunning).
	Remove(ctx context.Context, id string, force bool) error
	// WatchChunks hands fn the job's output in chunks of at most maxChunk
	// bytes, each as large as the output allows, and returns the job's
	// status as it ended (even if it was removed meanwhile).
	WatchChunks(ctx context.Context, id string, from int64, maxChunk int, fn func(jobrunner.Chunk) error) (jobrunner.Status, error)
	Shutdown(ctx context.Context) error
	// AttachInput gives holder the job's input (one holder at a time).
	AttachInput(id, holder string) (jobrunner.Input, error)
	// Refs returns every job's id, owner and name, without reading any
	// cgroup (every call that names a job resolves it with them).
	Refs() []jobrunner.Ref
	// Signal sends sig to the job's command, or to all its processes.
	Signal(id string, sig syscall.Signal, all bool) (jobrunner.Status, error)
	// TailOffset is the offset where the last n lines of the output start
	// (of both streams for s == 0, else of stream s).
	TailOffset(id string, n int64, s jobrunner.Stream) (int64, error)
}

var _ JobRunner = (*jobrunner.Runner)(nil)

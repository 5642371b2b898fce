package jobrunner

import "errors"

// Sentinel errors of the package; they are wrapped with %w and tested with
// errors.Is. Errors from the sandbox keep their own sentinels
// (sandbox.ErrExec, sandbox.ErrShim, sandbox.ErrInvalidLimits) wrapped
// inside, so callers can tell a command that could not start from a server
// fault.
var (
	// ErrJobNotFound means no job has the given id.
	ErrJobNotFound = errors.New("job not found")
	// ErrNotRunning means the job has already ended (Stop of an ended job).
	ErrNotRunning = errors.New("job is not running")
	// ErrRunning means the job still runs (Remove without force).
	ErrRunning = errors.New("job is running")
	// ErrStateDirInUse means another Runner (another server) uses the
	// state directory.
	ErrStateDirInUse = errors.New("state directory is in use")
	// ErrInvalidRequest means a StartRequest was rejected before anything
	// ran: empty command, NUL bytes, an environment entry without '=', or
	// invalid limits (then sandbox.ErrInvalidLimits is wrapped as well).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrInvalidOffset means a watch asked for an offset before 0 or past
	// the end of a finished output log.
	ErrInvalidOffset = errors.New("invalid output offset")
	// ErrTooManyJobs means a StartRequest's Quota had no room (the error
	// is a *QuotaError).
	ErrTooManyJobs = errors.New("too many running jobs")
	// ErrNameTaken means the owner already has a job with the requested
	// name (running or retained).
	ErrNameTaken = errors.New("job name is taken")
	// ErrShuttingDown means the Runner is shutting down and starts no job.
	ErrShuttingDown = errors.New("job runner is shutting down")
	// ErrLogFinished means a write came after the output log was finished.
	ErrLogFinished = errors.New("output log is finished")
	// ErrNoInput means the job was started without stdin or tty: nothing
	// can write to it (AttachInput).
	ErrNoInput = errors.New("job was started without input")
	// ErrInputBusy means another writer holds the job's input; the error
	// names it (AttachInput).
	ErrInputBusy = errors.New("job's input is held by another writer")
	// ErrInputClosed means the job's input is closed: its stdin reached
	// EOF (Input.Close), the job closed it, or the job ended.
	ErrInputClosed = errors.New("job's input is closed")
	// ErrNetworkOff means a job asked for the network on a runner that has
	// none (Config.Network is nil: serve without --network).
	ErrNetworkOff = errors.New("job networking is off")
	// ErrTooManyNetworkJobs means the owner already runs
	// Quota.NetworkPerOwner networked jobs, or the job network's subnet has
	// no free address.
	ErrTooManyNetworkJobs = errors.New("too many networked jobs")
	// ErrCorruptLog means an output log file does not hold well-formed
	// records (it was changed behind the log's back).
	ErrCorruptLog = errors.New("output log is corrupt")
	// ErrStateDirFull means a job could not start because its output log
	// could not be created: the state directory's file system is out of
	// space or inodes (ENOSPC, EDQUOT). Running jobs are not affected.
	ErrStateDirFull = errors.New("the server's state directory is full")
)

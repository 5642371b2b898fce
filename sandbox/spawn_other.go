//go:build !linux

package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// Jobs need Linux namespaces and cgroups. On other systems the package
// builds (so the CLI and certgen do) and every entry point fails clearly.

var errNotLinux = fmt.Errorf("%w: jobs need Linux namespaces and cgroups, this is %s", ErrShim, runtime.GOOS)

// Sandbox starts jobs; it cannot be created off Linux.
type Sandbox struct{}

// New fails off Linux.
func New(Config) (*Sandbox, error) { return nil, errNotLinux }

// Cgroups is nil off Linux.
func (s *Sandbox) Cgroups() Cgroups { return nil }

// StartPool does nothing off Linux.
func (s *Sandbox) StartPool() {}

// Close does nothing off Linux.
func (s *Sandbox) Close() error { return nil }

// Start fails off Linux.
func (s *Sandbox) Start(Spec, StartConfig) (*Process, error) { return nil, errNotLinux }

// Process is a started job; none exist off Linux.
type Process struct{ done chan struct{} }

func (p *Process) Pid() int                          { return 0 }
func (p *Process) Done() <-chan struct{}             { return p.done }
func (p *Process) Wait() ExitState                   { return ExitState{} }
func (p *Process) CleanupErr() error                 { return nil }
func (p *Process) Terminate() error                  { return errNotLinux }
func (p *Process) Kill() error                       { return errNotLinux }
func (p *Process) Signal(syscall.Signal, bool) error { return errNotLinux }
func (p *Process) Stats() (Stats, error)             { return Stats{}, errNotLinux }
func (p *Process) TTY() *os.File                     { return nil }

// SetWindowSize fails off Linux.
func SetWindowSize(*os.File, uint16, uint16) error { return errNotLinux }

// RunChild is the shim's entry point; off Linux there is no shim.
func RunChild() {
	fmt.Fprintln(os.Stderr, errNotLinux)
	os.Exit(childFailedExit)
}

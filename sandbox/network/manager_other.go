//go:build !linux

package network

import (
	"errors"
	"net/netip"
)

// Manager is the job network of one server (Linux only).
type Manager struct{}

// Attachment is one job's place on the network (Linux only).
type Attachment struct {
	Addr       netip.Addr
	Veth       string
	ResolvConf string
}

// New fails: job networking needs Linux.
func New(cfg Config) (*Manager, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return nil, errors.New("network: job networking runs on Linux only")
}

func (m *Manager) Close() error { return nil }
func (m *Manager) Attach(pid int, bps uint64) (*Attachment, error) {
	return nil, errors.New("network: Linux only")
}
func (a *Attachment) Release() error { return nil }

func (m *Manager) Bridge() string      { return "" }
func (m *Manager) Table() string       { return "" }
func (m *Manager) VethPrefix() string  { return "" }
func (m *Manager) Gateway() netip.Addr { return netip.Addr{} }
func (m *Manager) DNS() []netip.Addr   { return nil }

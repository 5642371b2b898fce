//go:build !linux

package server

import (
	"net"
	"time"
)

// setUserTimeout does nothing off Linux (serve runs on Linux only).
func setUserTimeout(net.Conn, time.Duration) {}

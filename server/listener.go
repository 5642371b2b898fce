package server

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// connLimiter wraps the server's listener to bound the connections open at
// once, before any byte of TLS is read: at most max in all, and at most
// perSource from one source address (an IPv6 address counts as its /64,
// which one host usually holds whole).
//
// At the total cap, Accept waits for a connection to close: new
// connections wait in the kernel's accept queue (a client sees a slow
// connect, not an error) and are taken in arrival order as slots free up.
// A source at its own cap has its new connection closed at once. Every
// connection holds its slots until it is closed; the handshake deadline
// (grpc.ConnectionTimeout) closes one that never completes TLS, so an
// attacker's idle connections free their slots within that deadline.
type connLimiter struct {
	net.Listener
	perSource int
	// userTimeout is the TCP_USER_TIMEOUT of every connection (0 = none).
	userTimeout time.Duration
	log         *slog.Logger
	slots       chan struct{} // one element per open connection
	closed      chan struct{} // closed by Close: Accept stops waiting
	closeOnce   sync.Once

	// mu guards bySource and the refusal counters.
	mu       sync.Mutex
	bySource map[netip.Prefix]int // sources with no connection have no entry
	refused  int                  // refused since lastWarn
	lastWarn time.Time
}

// limitConns wraps l; perSource <= 0 or >= max means no per-source cap.
func limitConns(l net.Listener, max, perSource int, userTimeout time.Duration, log *slog.Logger) *connLimiter {
	if perSource <= 0 || perSource > max {
		perSource = max
	}
	return &connLimiter{
		Listener:    l,
		perSource:   perSource,
		userTimeout: userTimeout,
		log:         log,
		slots:       make(chan struct{}, max),
		closed:      make(chan struct{}),
		bySource:    make(map[netip.Prefix]int),
	}
}

// Accept returns the next connection that fits both caps.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		if l.admit(src) {
			if l.userTimeout > 0 {
				setUserTimeout(c, l.userTimeout)
			}
			return &limitedConn{Conn: c, release: func() { l.release(src) }}, nil
		}
		c.Close()
		<-l.slots
	}
}

// admit takes a slot of src's, or counts a refusal (and warns at most
// every ten seconds, so that an attack cannot flood the log).
func (l *connLimiter) admit(src netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bySource[src] < l.perSource {
		l.bySource[src]++
		return true
	}
	l.refused++
	if now := time.Now(); now.Sub(l.lastWarn) >= 10*time.Second {
		l.log.Warn("connections refused: their source is at its cap", "source", src.String(),
			"max_conns_per_ip", l.perSource, "refused", l.refused)
		l.lastWarn, l.refused = now, 0
	}
	return false
}

// release gives back a connection's slots.
func (l *connLimiter) release(src netip.Prefix) {
	l.mu.Lock()
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
	l.mu.Unlock()
	<-l.slots
}

func (l *connLimiter) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// sourceOf is the key of a connection's source: its IPv4 address, or the
// /64 of its IPv6 address. Anything else (not TCP) shares one key.
func sourceOf(a net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p
}

// limitedConn gives its slots back once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

package server

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
)

// TLS session resumption. A client that keeps the session ticket of a full
// handshake (the CLI does, in its session cache) resumes with it: neither
// side signs or verifies a certificate again. What a full handshake checks
// still holds on a resumed connection:
//
//   - the client certificate chain is the one the full handshake verified,
//     carried inside the ticket, which only this server can read (the
//     identity is that certificate's, never anything the client says);
//   - crypto/tls resumes only while that certificate is unexpired and its
//     root is among the state's CAs;
//   - every call checks the chain against the deny list and the CAs of the
//     current state (authenticate), as for any connection;
//   - a reload makes new ticket keys: after it, every client does a full
//     handshake against the new CA and certificates;
//   - a session resumes for at most sessionMaxAge after the full handshake
//     it descends from, however often it was resumed in between.

// sessionMaxAge is how long after a full handshake a session may still be
// resumed; it is also how often the ticket keys rotate (a ticket lives at
// most twice that). Tests shorten it.
func sessionMaxAge() time.Duration { return time.Duration(sessionMaxAgeNanos.Load()) }

var sessionMaxAgeNanos = func() *atomic.Int64 {
	var v atomic.Int64
	v.Store(int64(time.Hour))
	return &v
}()

// ticketKeys are a state's session ticket keys: the newest encrypts, the
// previous one still decrypts.
type ticketKeys struct {
	mu      sync.Mutex
	keys    [][32]byte // newest first, at most two
	rotated time.Time
}

// current returns the keys, rotating them when the newest is older than
// sessionMaxAge.
func (k *ticketKeys) current(now time.Time) ([][32]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.keys) == 0 || now.Sub(k.rotated) >= sessionMaxAge() {
		var key [32]byte
		if _, err := rand.Read(key[:]); err != nil {
			return nil, err
		}
		k.keys = append([][32]byte{key}, k.keys[:min(len(k.keys), 1)]...)
		k.rotated = now
	}
	return k.keys, nil
}

// authTag marks the SessionState.Extra entry that holds the time of the
// full handshake a session descends from.
const authTag = "telehandler-auth-time:"

// connConfig is the TLS configuration of one connection: the state's, with
// its ticket keys, and tickets that carry the time of the full handshake
// so that resuming cannot extend a session past sessionMaxAge.
func (st *tlsState) connConfig() (*tls.Config, error) {
	keys, err := st.tickets.current(time.Now())
	if err != nil {
		return nil, err
	}
	cfg := st.config.Clone()
	cfg.SetSessionTicketKeys(keys)
	var resumedAuth time.Time // of the session this connection resumes
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return nil, nil // not ours, or from before a reload: full handshake
		}
		at, ok := authTime(ss.Extra)
		if age := time.Since(at); !ok || age < -time.Minute || age > sessionMaxAge() {
			return nil, nil
		}
		resumedAuth = at
		return ss, nil
	}
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		at := time.Now()
		if cs.DidResume {
			at = resumedAuth
		}
		ss.Extra = append(ss.Extra, binary.BigEndian.AppendUint64([]byte(authTag), uint64(at.UnixNano())))
		return cfg.EncryptTicket(cs, ss)
	}
	return cfg, nil
}

// authTime reads the time connConfig's WrapSession put into a ticket.
func authTime(extra [][]byte) (time.Time, bool) {
	for _, e := range extra {
		if len(e) == len(authTag)+8 && string(e[:len(authTag)]) == authTag {
			return time.Unix(0, int64(binary.BigEndian.Uint64(e[len(authTag):]))), true
		}
	}
	return time.Time{}, false
}

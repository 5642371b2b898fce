package client

import (
	"strings"
	"testing"
	"time"

	"github.com/drrev/telehandler/certgen"
)

// TestCheckClientCert: what the server would refuse without a clear
// message is named before connecting.
func TestCheckClientCert(t *testing.T) {
	now := time.Now()
	ca, err := certgen.NewCA(now, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := certgen.NewServerCert(ca, nil, now, time.Hour)
	alice, _ := certgen.NewClientCert(ca, certgen.User{Name: "alice"}, now, time.Hour)
	if err := checkClientCert("alice.crt", alice.Cert, now); err != nil {
		t.Errorf("a valid client certificate: %v", err)
	}
	if err := checkClientCert("server.crt", srv.Cert, now); err == nil || !strings.Contains(err.Error(), "server.crt is a server certificate") || !strings.Contains(err.Error(), "certgen --user") {
		t.Errorf("a server certificate: %v", err)
	}
	if err := checkClientCert("alice.crt", alice.Cert, now.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "--renew alice") {
		t.Errorf("an expired certificate: %v", err)
	}
	if err := checkClientCert("alice.crt", alice.Cert, now.Add(-time.Hour)); err == nil || !strings.Contains(err.Error(), "clock") {
		t.Errorf("a certificate not valid yet: %v", err)
	}
}

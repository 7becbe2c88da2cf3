//go:build linux

package nbd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/nbd"
	"coffer/internal/nbd/nbdtest"
	"coffer/internal/testenv"
)

// testPKI makes a CA and a server certificate for 127.0.0.1 and writes
// the CA to dir/ca-cert.pem, where libnbd's tls-certificates looks for it.
func testPKI(t *testing.T, dir string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notBefore := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "coffer test CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(filepath.Join(dir, "ca-cert.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	}
	return cfg, pool
}

// TestTLSWithNbdinfo runs nbdinfo and nbdcopy over nbds:// against a server
// that requires TLS; libnbd verifies the server against the test CA given
// with the tls-certificates URI parameter.
func TestTLSWithNbdinfo(t *testing.T) {
	testenv.NeedProgram(t, "nbdinfo")
	testenv.NeedProgram(t, "nbdcopy")
	certs := t.TempDir()
	cfg, _ := testPKI(t, certs)
	f := fileBackend(t, 8<<20)
	ex := &exports{}
	ex.add("tok", f, false)
	addr, _ := startServer(t, ex, func(s *nbd.Server) { s.TLSConfig = cfg; s.RequireTLS = true })

	tlsURI := "nbds://" + addr + "/tok?tls-certificates=" + certs
	out := run(t, "nbdinfo", tlsURI)
	if want := "newstyle-fixed with TLS"; !strings.Contains(out, want) {
		t.Errorf("nbdinfo over TLS: output lacks %q:\n%s", want, out)
	}
	src := makeImage(t, 8<<20)
	run(t, "nbdcopy", src, tlsURI)
	if hashBackend(t, f) != hashFile(t, src) {
		t.Fatal("nbdcopy over TLS: backend differs from source")
	}
	if out, err := runErr(t, "nbdinfo", nbdURI(addr, "tok")); err == nil {
		t.Fatalf("plain-text nbdinfo against a TLS-only server succeeded:\n%s", out)
	}
}

// TestTLSWithGoClient drives STARTTLS from Go: options before TLS are
// refused with NBD_REP_ERR_TLS_REQD, and after the upgrade reads and
// writes work.
func TestTLSWithGoClient(t *testing.T) {
	cfg, pool := testPKI(t, t.TempDir())
	f := fileBackend(t, 1<<20)
	ex := &exports{}
	ex.add("tok", f, false)
	addr, _ := startServer(t, ex, func(s *nbd.Server) { s.TLSConfig = cfg; s.RequireTLS = true })
	ctx := context.Background()

	// Without TLS: refused.
	_, err := nbdtest.Dial(ctx, addr, "tok", nbdtest.Options{})
	var oe *nbdtest.OptionError
	if !errors.As(err, &oe) || oe.Reply != nbdtest.RepErrTLSReqd {
		t.Fatalf("GO without TLS: %v, want NBD_REP_ERR_TLS_REQD", err)
	}
	// Every other option before STARTTLS, too (INFO, LIST, …); ABORT ends.
	{
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := nbdtest.NewClient(nc)
		if err := c.Greet(); err != nil {
			t.Fatal(err)
		}
		info := append([]byte{0, 0, 0, 3}, "tok"...)
		info = append(info, 0, 0)
		for _, o := range []struct {
			opt  uint32
			data []byte
		}{{nbdtest.OptInfo, info}, {nbdtest.OptList, nil}, {nbdtest.OptStructuredReply, nil}} {
			if _, err := c.Option(o.opt, o.data); !errors.As(err, &oe) || oe.Reply != nbdtest.RepErrTLSReqd {
				t.Errorf("option %d without TLS: %v, want NBD_REP_ERR_TLS_REQD", o.opt, err)
			}
		}
		if _, err := c.Option(nbdtest.OptAbort, nil); err != nil {
			t.Errorf("abort without TLS: %v", err)
		}
		c.Close()
	}
	// Legacy EXPORT_NAME without TLS: the server must hang up.
	c, err := nbdtest.Dial(ctx, addr, "tok", nbdtest.Options{LegacyExportName: true})
	if err == nil {
		c.Close()
		t.Fatal("EXPORT_NAME without TLS succeeded")
	}

	c, err = nbdtest.Dial(ctx, addr, "tok", nbdtest.Options{
		TLS:        &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		Structured: true,
	})
	if err != nil {
		t.Fatalf("dial with STARTTLS: %v", err)
	}
	defer c.Disconnect()
	if _, err := c.WriteAt([]byte("over tls"), 100); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8)
	if _, err := c.ReadAt(got, 100); err != nil || string(got) != "over tls" {
		t.Fatalf("read back %q, %v", got, err)
	}
	// A second STARTTLS is invalid.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c2 := nbdtest.NewClient(nc)
	defer c2.Close()
	if err := c2.Greet(); err != nil {
		t.Fatal(err)
	}
	if err := c2.StartTLS(ctx, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Option(nbdtest.OptStartTLS, nil); !errors.As(err, &oe) || oe.Reply != nbdtest.RepErrInvalid {
		t.Fatalf("second STARTTLS: %v, want NBD_REP_ERR_INVALID", err)
	}
	if _, err := c2.Option(nbdtest.OptAbort, nil); err != nil {
		t.Fatalf("abort: %v", err)
	}
}

// TestTLSOrderlyClose: a TLS client that ends as libnbd's nbd_shutdown
// does (NBD_CMD_DISC, its close_notify, shutdown of its writes, then
// reading to the end) receives the server's close_notify alert before the
// end of the stream, not a bare end (which it cannot tell from a
// truncation) or a reset; twenty times, so that a close racing the
// client's close_notify would show. TLS 1.2, whose alerts are records of
// their own type (21) on the wire.
func TestTLSOrderlyClose(t *testing.T) {
	cfg, pool := testPKI(t, t.TempDir())
	ex := &exports{}
	ex.add("tok", fileBackend(t, 1<<20), false)
	addr, _ := startServer(t, ex, func(s *nbd.Server) { s.TLSConfig = cfg; s.RequireTLS = true })
	for i := range 20 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := nbdtest.Negotiate(t.Context(), nc, "tok", nbdtest.Options{
			TLS:        &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12},
			Structured: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteAt([]byte("orderly"), int64(i)*4096); err != nil {
			t.Fatal(err)
		}
		if err := c.SendRequest(nbdtest.CmdDisc, 0, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Conn.(*tls.Conn).CloseWrite(); err != nil {
			t.Fatalf("connection %d: client close_notify: %v", i, err)
		}
		nc.(*net.TCPConn).CloseWrite()
		// Nothing but the server's close_notify is to come: read the
		// records off the socket.
		nc.SetReadDeadline(time.Now().Add(time.Minute))
		rest, err := io.ReadAll(nc)
		if err != nil || len(rest) == 0 || rest[0] != 21 {
			t.Fatalf("connection %d: after DISC the client read %d bytes (%x) and %v; want the server's close_notify (an alert record) and the end", i, len(rest), rest, err)
		}
		nc.Close()
	}
}

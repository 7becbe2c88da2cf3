// Package notifytest runs a minimal real SMTP server on loopback for
// tests: ESMTP with STARTTLS (a certificate of a CA made for the test),
// AUTH PLAIN only after STARTTLS, and the messages it accepted kept for
// inspection. It speaks the protocol as a real server does, so net/smtp's
// client runs against it unchanged.
package notifytest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is one accepted message.
type Message struct {
	From     string
	To       []string
	Data     string // as sent, dot-stuffing undone, CRLF line ends
	TLS      bool   // the DATA came over TLS
	AuthUser string // who logged in, if anyone
}

// SMTP is a running test server.
type SMTP struct {
	Addr  string // host:port
	CAPEM string // the CA to trust for its STARTTLS certificate
	// NoStartTLS makes it not offer STARTTLS (set before use).
	NoStartTLS bool
	// User and Password, when set, are the only login accepted.
	User, Password string

	ln     net.Listener
	tlsCfg *tls.Config
	mu     sync.Mutex
	msgs   []Message
	fail   int
	wg     sync.WaitGroup
}

// StartSMTP starts a server on 127.0.0.1 until the test ends.
func StartSMTP(t testing.TB) *SMTP {
	t.Helper()
	cfg, ca, err := certificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTP{Addr: ln.Addr().String(), CAPEM: ca, ln: ln, tlsCfg: cfg}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

// FailNext makes the next n transactions fail with a temporary error
// (451 at MAIL FROM).
func (s *SMTP) FailNext(n int) {
	s.mu.Lock()
	s.fail = n
	s.mu.Unlock()
}

// Messages returns the accepted messages.
func (s *SMTP) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

func (s *SMTP) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.session(c)
		}()
	}
}

func (s *SMTP) session(c net.Conn) {
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	say := func(format string, args ...any) {
		fmt.Fprintf(w, format+"\r\n", args...)
		w.Flush()
	}
	say("220 coffer-test ESMTP")
	var tlsOn bool
	var user string
	var msg *Message
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			lines := []string{"coffer-test"}
			if !tlsOn && !s.NoStartTLS {
				lines = append(lines, "STARTTLS")
			}
			if tlsOn {
				lines = append(lines, "AUTH PLAIN")
			}
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				say("250%s%s", sep, l)
			}
		case "STARTTLS":
			if tlsOn || s.NoStartTLS {
				say("503 STARTTLS not available")
				continue
			}
			say("220 go ahead")
			tc := tls.Server(c, s.tlsCfg)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, tlsOn, user = tc, true, ""
			r, w = bufio.NewReader(c), bufio.NewWriter(c)
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			if !tlsOn {
				say("530 5.7.0 Must issue a STARTTLS command first")
				continue
			}
			if !strings.EqualFold(mech, "PLAIN") {
				say("504 unsupported mechanism")
				continue
			}
			b, err := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(b), "\x00")
			if err != nil || len(parts) != 3 || (s.User != "" && (parts[1] != s.User || parts[2] != s.Password)) {
				say("535 5.7.8 Authentication credentials invalid")
				continue
			}
			user = parts[1]
			say("235 2.7.0 Authentication successful")
		case "MAIL":
			if s.User != "" && user == "" {
				say("530 5.7.0 Authentication required")
				continue
			}
			s.mu.Lock()
			fail := s.fail > 0
			if fail {
				s.fail--
			}
			s.mu.Unlock()
			if fail {
				say("451 4.3.0 Try again later")
				continue
			}
			msg = &Message{From: pathArg(arg), TLS: tlsOn, AuthUser: user}
			say("250 ok")
		case "RCPT":
			if msg == nil {
				say("503 MAIL first")
				continue
			}
			msg.To = append(msg.To, pathArg(arg))
			say("250 ok")
		case "DATA":
			if msg == nil || len(msg.To) == 0 {
				say("503 RCPT first")
				continue
			}
			say("354 end with .")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			msg.Data, msg.TLS = data.String(), tlsOn
			s.mu.Lock()
			s.msgs = append(s.msgs, *msg)
			s.mu.Unlock()
			msg = nil
			say("250 queued")
		case "RSET":
			msg = nil
			say("250 ok")
		case "NOOP":
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 unknown command")
		}
	}
}

// pathArg returns the address of "FROM:<a>" or "TO:<a>".
func pathArg(arg string) string {
	_, v, _ := strings.Cut(arg, ":")
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ' '); i >= 0 {
		v = v[:i] // parameters such as BODY=8BITMIME
	}
	return strings.Trim(v, "<>")
}

// certificate makes a CA and a certificate for 127.0.0.1 and localhost.
func certificate() (*tls.Config, string, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	notBefore, notAfter := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "notifytest CA"},
		NotBefore: notBefore, NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, "", err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: notBefore, NotAfter: notAfter, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, "", err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	return cfg, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), nil
}

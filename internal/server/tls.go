package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"coffer/internal/identity"
)

// TLSFiles are the certificate files the server generates once into its
// data directory: a private CA and a server certificate it signs.
type TLSFiles struct {
	CA, Cert, Key string
}

func tlsFiles(dataDir string) TLSFiles {
	d := filepath.Join(dataDir, "tls")
	return TLSFiles{CA: filepath.Join(d, "ca.pem"), Cert: filepath.Join(d, "server.pem"), Key: filepath.Join(d, "server-key.pem")}
}

// loadOrCreateTLS returns the server's TLS config and the PEM of the CA
// clients must trust. The node's certificate and key are files in the
// data dir, made on first use and signed by ca (called then: it returns
// the certificate authority every node shares, a certificate and a key in
// PEM). hosts are added to the certificate's subject alternative names
// (loopback names are always there). A data dir whose certificate was made
// by an earlier version, under a CA of its own, keeps it.
func loadOrCreateTLS(dataDir string, now time.Time, hosts []string, ca func() ([]byte, error)) (*tls.Config, []byte, error) {
	f := tlsFiles(dataDir)
	if _, err := os.Stat(f.Cert); errors.Is(err, os.ErrNotExist) {
		pair, err := ca()
		if err != nil {
			return nil, nil, err
		}
		if err := issueTLS(f, pair, now, hosts); err != nil {
			return nil, nil, fmt.Errorf("generate TLS certificate: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("read CA certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, caPEM, nil
}

// serverNames are the names and addresses the server answers to: the
// loopback ones, the machine's host name and the given hosts (unspecified
// addresses aside). They go into the TLS certificate, and the server's
// endpoint URL under each is an audience of its tokens.
func serverNames(hosts []string) (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		dns = append(dns, hn)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() && !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if h != "" && !slices.Contains(dns, h) {
			dns = append(dns, h)
		}
	}
	return dns, ips
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// generateCA makes a certificate authority: its certificate and its key,
// one PEM after the other.
func generateCA(now time.Time) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "Coffer local CA", Organization: []string{"Coffer"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, err
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...), nil
}

// parseCA reads what generateCA made.
func parseCA(pair []byte) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certBlock, rest := pem.Decode(pair)
	keyBlock, _ := pem.Decode(rest)
	if certBlock == nil || keyBlock == nil || certBlock.Type != "CERTIFICATE" {
		return nil, nil, nil, errors.New("the certificate authority is not a certificate and a key in PEM")
	}
	cert, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the certificate authority: %w", err)
	}
	key, err := x509.ParseECPrivateKey(keyBlock.Bytes)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("the certificate authority's key: %w", err)
	}
	return cert, key, pem.EncodeToMemory(certBlock), nil
}

// issueTLS writes a server certificate for hosts signed by the CA pair
// (generateCA), its key, and the CA's certificate, into f.
func issueTLS(f TLSFiles, pair []byte, now time.Time, hosts []string) error {
	caCert, caKey, caPEM, err := parseCA(pair)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.CA), 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	dns, ips := serverNames(hosts)
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "coffer", Organization: []string{"Coffer"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(5, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: dns, IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := identity.WriteFileAtomic(f.CA, caPEM, 0o600); err != nil {
		return err
	}
	if err := identity.WriteFileAtomic(f.Key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return identity.WriteFileAtomic(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

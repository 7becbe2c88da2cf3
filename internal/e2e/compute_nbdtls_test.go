package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"coffer/internal/client"
	"coffer/internal/testenv"
)

// TestComputeNBDTLS checks that a --tls server offers its NBD exports over
// TLS: `coffer disk nbd-url` gives nbds:// URLs, and nbdinfo and nbdcopy
// verify the server against its generated CA and move data through it.
func TestComputeNBDTLS(t *testing.T) {
	nbdinfo := testenv.NeedProgram(t, "nbdinfo")
	nbdcopy := testenv.NeedProgram(t, "nbdcopy")
	ce := startCompute(t, Options{TLS: true})
	dir := t.TempDir()
	certs, g := ce.tlsGrant(t, "Write")
	url := g.NBDURL + "?tls-certificates=" + certs
	if out, err := exec.Command(nbdinfo, "--size", url).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "1073741824" {
		t.Fatalf("nbdinfo over TLS: %v %s", err, out)
	}
	data := make([]byte, 8<<20)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	src := filepath.Join(dir, "src.img")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nbdcopy, src, url).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy into the export over TLS: %v %s", err, out)
	}
	back := filepath.Join(dir, "back.img")
	if out, err := exec.Command(nbdcopy, url, back).CombinedOutput(); err != nil {
		t.Fatalf("nbdcopy out of the export over TLS: %v %s", err, out)
	}
	got, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	if len(got) < len(data) || sum(got[:len(data)]) != sum(data) || !bytes.Equal(got[len(data):], make([]byte, len(got)-len(data))) {
		t.Fatalf("read back over TLS differs (got %d bytes)", len(got))
	}
}

// TestComputeNBDRequiresTLS checks defect 4: a --tls server refuses NBD
// clients that do not upgrade to TLS, before any export is served, so a
// grant's data never crosses the network in clear. nbdinfo (libnbd) and
// qemu-img with a plain nbd:// URL are refused; nbds:// (libnbd) and
// qemu-img with tls-creds work. With --insecure-nbd, plain NBD is served
// again (TLS stays on offer).
func TestComputeNBDRequiresTLS(t *testing.T) {
	nbdinfo := testenv.NeedProgram(t, "nbdinfo")
	qemuImg := testenv.NeedProgram(t, "qemu-img")
	for _, insecure := range []bool{false, true} {
		ce := startCompute(t, Options{TLS: true, InsecureNBD: insecure})
		certs, g := ce.tlsGrant(t, "Read")
		u, err := url.Parse(g.NBDURL)
		if err != nil {
			t.Fatal(err)
		}
		plain := "nbd://" + strings.TrimPrefix(g.NBDURL, "nbds://")
		qemuPlain := []string{"info", "--output=json", plain}
		qemuTLS := []string{"info", "--output=json", "--object", "tls-creds-x509,id=tls0,endpoint=client,dir=" + certs,
			"--image-opts", "driver=nbd,host=" + u.Hostname() + ",port=" + u.Port() + ",export=" + strings.TrimPrefix(u.Path, "/") + ",tls-creds=tls0"}

		// Over TLS both clients work, whatever the mode.
		if out := run(t, nbdinfo, "--size", g.NBDURL+"?tls-certificates="+certs); strings.TrimSpace(out) != "1073741824" {
			t.Fatalf("nbdinfo over TLS: %s", out)
		}
		if out := run(t, qemuImg, qemuTLS...); !strings.Contains(out, `"virtual-size": 1073741824`) {
			t.Fatalf("qemu-img over TLS: %s", out)
		}
		if insecure {
			if out := run(t, nbdinfo, "--size", plain); strings.TrimSpace(out) != "1073741824" {
				t.Fatalf("nbdinfo in clear with --insecure-nbd: %s", out)
			}
			run(t, qemuImg, qemuPlain...)
			continue
		}
		// In clear: refused, with libnbd saying TLS is required.
		if out := fails(t, nbdinfo, "--size", plain); !strings.Contains(strings.ToLower(out), "tls") {
			t.Errorf("nbdinfo in clear was refused without naming TLS:\n%s", out)
		}
		if out := fails(t, qemuImg, qemuPlain...); !strings.Contains(strings.ToLower(out), "tls") {
			t.Errorf("qemu-img in clear was refused without naming TLS:\n%s", out)
		}
	}
}

// tlsGrant creates the 1 GiB disk "secure" on a --tls server, grants
// access to it, checks the NBD URL is nbds:// and returns the grant and a
// directory holding the server's CA as ca-cert.pem, where libnbd's
// tls-certificates and qemu's tls-creds-x509 look for it.
func (ce *computeEnv) tlsGrant(t *testing.T, access string) (string, client.AccessURI) {
	t.Helper()
	certs := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "ca-cert.pem"), ce.Server.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ce.createDisk(t, "secure", client.DiskSpec{SizeGB: 1})
	g := ce.grant(t, client.Disks, "secure", access)
	if !strings.HasPrefix(g.NBDURL, "nbds://") {
		t.Fatalf("TLS server gave NBD URL %q, want nbds://", g.NBDURL)
	}
	return certs, g
}

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
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
	certs := filepath.Join(dir, "certs")
	os.Mkdir(certs, 0o755)
	if err := os.WriteFile(filepath.Join(certs, "ca-cert.pem"), ce.Server.CAPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	ce.createDisk(t, "secure", client.DiskSpec{SizeGB: 1})
	g := ce.grant(t, client.Disks, "secure", "Write")
	if !strings.HasPrefix(g.NBDURL, "nbds://") {
		t.Fatalf("TLS server gave NBD URL %q, want nbds://", g.NBDURL)
	}
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

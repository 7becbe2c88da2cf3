package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
)

// computeEnv is a server with a group and an admin client for the compute
// tests.
type computeEnv struct {
	*Env
	c   *client.Client
	ctx context.Context
}

func startCompute(t *testing.T, o Options) *computeEnv {
	t.Helper()
	env := Start(t, o)
	ce := &computeEnv{Env: env, c: env.Client(""), ctx: context.Background()}
	if _, err := ce.c.CreateGroup(ce.ctx, "rg", "local", nil); err != nil {
		t.Fatal(err)
	}
	return ce
}

func (ce *computeEnv) diskID(name string) string {
	return "/subscriptions/" + ce.Admin.SubscriptionID + "/resourceGroups/rg/providers/Microsoft.Compute/disks/" + name
}

func (ce *computeEnv) createDisk(t *testing.T, name string, spec client.DiskSpec) client.Disk {
	t.Helper()
	if spec.Location == "" {
		spec.Location = "local"
	}
	d, err := ce.c.CreateDisk(ce.ctx, "rg", name, spec, true)
	if err != nil {
		t.Fatalf("create disk %s: %v", name, err)
	}
	return d
}

func (ce *computeEnv) snapshot(t *testing.T, name, disk string) client.Snapshot {
	t.Helper()
	s, err := ce.c.CreateSnapshot(ce.ctx, "rg", name, client.SnapshotSpec{Location: "local", Source: ce.diskID(disk), Incremental: true}, true)
	if err != nil {
		t.Fatalf("snapshot %s: %v", name, err)
	}
	if s.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("snapshot %s: %+v", name, s.Properties)
	}
	return s
}

func (ce *computeEnv) grant(t *testing.T, typ, name, access string) client.AccessURI {
	t.Helper()
	a, err := ce.c.GrantAccess(ce.ctx, typ, "rg", name, access, time.Hour)
	if err != nil {
		t.Fatalf("grant %s on %s: %v", access, name, err)
	}
	if a.AccessSAS == "" || a.NBDURL == "" {
		t.Fatalf("grant: %+v", a)
	}
	return a
}

// run runs a program and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fails runs a program that must fail and returns its output.
func fails(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err == nil {
		t.Fatalf("%s %s succeeded, want failure:\n%s", name, strings.Join(args, " "), out)
	}
	return string(out)
}

// fileHash is the SHA-256 of a file's contents.
func fileHash(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func bytesHash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// extent is a region of an image: data (random) at Off of Len bytes.
type extent struct{ Off, Len int64 }

// sparseImage writes a sparse raw image of size bytes with random data in
// the given extents and returns its path.
func sparseImage(t *testing.T, dir, name string, size int64, seed uint64, exts []extent) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 4<<20)
	for _, e := range exts {
		for pos := e.Off; pos < e.Off+e.Len; {
			n := min(int64(len(buf)), e.Off+e.Len-pos)
			fillRandom(buf[:n], rng)
			if _, err := f.WriteAt(buf[:n], pos); err != nil {
				t.Fatal(err)
			}
			pos += n
		}
	}
	return p
}

// fillRandom fills b with bytes from rng.
func fillRandom(b []byte, rng *rand.Rand) {
	for i := 0; i < len(b); i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8 && i+k < len(b); k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
}

// createGroups creates resource groups in the "local" region.
func createGroups(t testing.TB, ctx context.Context, c *client.Client, names ...string) {
	t.Helper()
	for _, g := range names {
		if _, err := c.CreateGroup(ctx, g, "local", nil); err != nil {
			t.Fatalf("create group %s: %v", g, err)
		}
	}
}

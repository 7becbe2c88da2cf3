package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"coffer/internal/cli"
	"coffer/internal/client"
	"coffer/internal/testenv"
)

// TestComputeCLI drives disks and snapshots with the coffer CLI in-process:
// upload a sparse image (creating an Upload disk), show, nbd-url (checked
// with nbdinfo), download, snapshot, a disk from the snapshot, download it,
// delete.
func TestComputeCLI(t *testing.T) {
	ce := startCompute(t, Options{})
	t.Setenv("COFFER_CONFIG", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("COFFER_ENDPOINT", ce.Endpoint)
	t.Setenv("COFFER_TOKEN", ce.Admin.Token)
	t.Setenv("COFFER_SUBSCRIPTION", ce.Admin.SubscriptionID)
	coffer := func(args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := cli.Main(context.Background(), args, &cli.Env{Stdout: &out, Stderr: &errb}); code != 0 {
			t.Fatalf("coffer %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}
	dir := t.TempDir()
	const size = 64<<20 + 4096
	img := sparseImage(t, dir, "disk.img", size, 11, []extent{{0, 1 << 20}, {17 << 20, 9 << 20}, {size - 4096, 4096}})
	want := fileHash(t, img)

	_, progress := coffer("disk", "upload", "-g", "rg", "-n", "up", img)
	if !strings.Contains(progress, "Uploaded") || !strings.Contains(progress, "MiB/s") {
		t.Fatalf("upload progress: %q", progress)
	}
	out, _ := coffer("disk", "show", "-g", "rg", "-n", "up", "-o", "json")
	var d client.Disk
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.Properties.DiskState != "Unattached" || d.Properties.DiskSizeBytes != size {
		t.Fatalf("disk show: %v %s", err, out)
	}
	if nbdinfo := testenv.NeedProgram(t, "nbdinfo"); nbdinfo != "" {
		u, _ := coffer("disk", "nbd-url", "-g", "rg", "-n", "up")
		if got := strings.TrimSpace(run(t, nbdinfo, "--size", strings.TrimSpace(u))); got != strconv.Itoa(size) {
			t.Fatalf("nbdinfo --size %s", got)
		}
		coffer("disk", "revoke-access", "-g", "rg", "-n", "up")
	}
	back := filepath.Join(dir, "back.img")
	coffer("disk", "download", "-g", "rg", "-n", "up", back)
	if got := fileHash(t, back); got != want {
		t.Fatalf("downloaded %s, want %s", got, want)
	}
	coffer("snapshot", "create", "-g", "rg", "-n", "s1", "--source", "up")
	out, _ = coffer("snapshot", "list", "-g", "rg", "-o", "tsv")
	if !strings.HasPrefix(out, "s1\tlocal\t1\ttrue\tup\tSucceeded") {
		t.Fatalf("snapshot list: %q", out)
	}
	// A --source that names neither a snapshot nor a disk says so, and
	// creates nothing.
	var out2, errb bytes.Buffer
	code := cli.Main(context.Background(), []string{"disk", "create", "-g", "rg", "-n", "x", "--source", "nosuch"}, &cli.Env{Stdout: &out2, Stderr: &errb})
	if code != cli.ExitNotFound || !strings.Contains(errb.String(), "Neither a snapshot nor a disk named 'nosuch' was found in resource group 'rg'") {
		t.Fatalf("disk create --source nosuch: exit %d\n%s", code, errb.String())
	}
	coffer("disk", "create", "-g", "rg", "-n", "restored", "--source", "s1")
	// A disk's name works as a source too.
	coffer("disk", "create", "-g", "rg", "-n", "copy", "--source", "up")
	coffer("disk", "delete", "-g", "rg", "-n", "copy", "-y")
	back2 := filepath.Join(dir, "restored.img")
	coffer("disk", "download", "-g", "rg", "-n", "restored", back2)
	if got := fileHash(t, back2); got != want {
		t.Fatalf("restored disk %s, want %s", got, want)
	}
	out, _ = coffer("disk", "list", "-o", "tsv")
	if strings.Count(out, "\n") != 2 {
		t.Fatalf("disk list: %q", out)
	}
	coffer("snapshot", "delete", "-g", "rg", "-n", "s1", "-y")
	coffer("disk", "delete", "-g", "rg", "-n", "restored", "-y")
	coffer("disk", "delete", "-g", "rg", "-n", "up", "-y")
	if out, _ = coffer("disk", "list", "-o", "tsv"); out != "" {
		t.Fatalf("disks left: %q", out)
	}
}

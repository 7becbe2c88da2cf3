package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/rbac"
)

// TestFilesystemOnDisk puts ext4 on a Coffer disk (nbdfuse + losetup),
// runs a writer that creates files, fsyncs them and renames them into
// place while the policy's hourly schedule fires backups (the server's
// clock is a fake that the test moves to each slot), then restores every
// recovery point to a new disk and attaches it the same way: after the
// journal is replayed, fsck.ext4 -n must find nothing, every file whose
// fsync, rename and directory fsync had returned before the slot fired
// must be there in that version or a later one, and every file under a
// final name must hold one of the versions written to it (with its
// sha256). A snapshot taken under a mounted filesystem is what a power
// cut leaves: this is the promise that such a recovery point is usable.
func TestFilesystemOnDisk(t *testing.T) {
	tools := needBlockTools(t)
	clk := clock.NewFake(time.Now().UTC())
	env := Start(t, Options{Clock: clk})
	ctx := context.Background()
	c := env.Client("")
	createGroups(t, ctx, c, "rg-fs", "rg-snaps", "rg-vault", "rg-restore")
	disk, err := c.CreateDisk(ctx, "rg-fs", "fs", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	// The grants outlive every slot the test moves the clock to.
	g, err := c.GrantAccess(ctx, client.Disks, "rg-fs", "fs", "Write", 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	src := tools.attach(t, g.NBDURL)
	run(t, tools.mkfs, "-q", src.Dev)
	src.Mount(t, "rw")

	bi := protectDisk(t, ctx, c, disk.ID, "rg-vault", "vault", "rg-snaps", "rg-restore", 1)

	w := startFileWriter(src.Mnt, 11)
	defer w.stop()
	const rounds = 6
	first := clk.Now().Truncate(time.Hour).Add(time.Hour) // the policy's first slot after protection
	var expected []map[string]int
	for k := range rounds {
		w.waitDurable(t, 40)
		expected = append(expected, w.durable())
		clk.Set(first.Add(time.Duration(k) * time.Hour))
		waitRecoveryPoints(t, ctx, c, bi, k+1)
	}
	if err := w.stop(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	src.Unmount(t)
	if code, out := src.Fsck(t, "-fn"); code != 0 {
		t.Fatalf("fsck of the source disk after umount: exit %d\n%s", code, out)
	}

	rps, err := c.ListRecoveryPoints(ctx, bi.rg, bi.vault, bi.name, "")
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(rps, func(i, j int) bool { return rps[i].Properties.RecoveryPointTime < rps[j].Properties.RecoveryPointTime })
	if len(rps) != rounds {
		t.Fatalf("%d recovery points, want %d", len(rps), rounds)
	}
	jobs, err := c.ListJobs(ctx, bi.rg, bi.vault, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Properties.Operation == "Backup" && (j.Properties.Status != "Completed" || j.Properties.IsUserTriggered) {
			t.Fatalf("backup job %s: %s, user triggered %v, %+v", j.Name, j.Properties.Status, j.Properties.IsUserTriggered, j.Properties.ErrorDetails)
		}
	}

	for k, rp := range rps {
		name := fmt.Sprintf("restored-%d", k)
		target := "/subscriptions/" + env.Admin.SubscriptionID + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/" + name
		jobID, err := c.Restore(ctx, bi.rg, bi.vault, bi.name, client.RestoreRequest(rp.Properties.RecoveryPointID, target, "local"))
		if err != nil {
			t.Fatalf("restore %s: %v", rp.Name, err)
		}
		if j := waitJobDone(t, ctx, c, bi.rg, bi.vault, jobID); j.Properties.Status != "Completed" {
			t.Fatalf("restore job of %s: %s %+v", rp.Name, j.Properties.Status, j.Properties.ErrorDetails)
		}
		rg, err := c.GrantAccess(ctx, client.Disks, "rg-restore", name, "Write", 7*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		dev := tools.attach(t, rg.NBDURL)
		// Replay the journal, as mounting after a power cut would, then
		// check without changing anything.
		code, replay := dev.Fsck(t, "-p", "-E", "journal_only")
		if code > 1 {
			t.Fatalf("recovery point %d: journal replay: exit %d\n%s", k, code, replay)
		}
		if code, out := dev.Fsck(t, "-fn"); code != 0 {
			t.Fatalf("recovery point %d: fsck.ext4 -fn: exit %d\n%s", k, code, out)
		}
		dev.Mount(t, "ro")
		n := w.check(t, dev.Mnt, expected[k])
		t.Logf("recovery point %d (%s): %q, then fsck clean; the %d files durable before the slot all present and intact",
			k, rp.Properties.RecoveryPointTime, strings.TrimSpace(replay), n)
		dev.Unmount(t)
		dev.Detach(t)
	}
}

// protection is a backup instance made by protectDisk.
type protection struct{ rg, vault, name string }

// protectDisk creates a vault with an hourly policy (every hours hours,
// from midnight UTC), gives the vault's identity the roles a backup and a
// restore into restoreGroup need, and protects the disk.
func protectDisk(t testing.TB, ctx context.Context, c *client.Client, diskID, vaultGroup, vault, snapGroup, restoreGroup string, hours int) protection {
	t.Helper()
	v, err := c.CreateVault(ctx, vaultGroup, vault, "local", "")
	if err != nil {
		t.Fatalf("create vault: %v", err)
	}
	props, err := client.BuildDiskPolicy(client.DiskPolicyOptions{Hours: hours, Retention: "7d"})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := c.PutPolicy(ctx, vaultGroup, vault, "hourly", props)
	if err != nil {
		t.Fatalf("create policy: %v", err)
	}
	sub := "/subscriptions/" + c.Subscription
	for _, a := range []struct{ role, scope string }{
		{rbac.RoleDiskBackupReader, diskID},
		{rbac.RoleDiskSnapshotContributor, sub + "/resourceGroups/" + snapGroup},
		{rbac.RoleDiskRestoreOperator, sub + "/resourceGroups/" + restoreGroup},
	} {
		if _, err := c.CreateRoleAssignment(ctx, a.scope, identity.NewGUID(), sub+"/providers/Microsoft.Authorization/roleDefinitions/"+a.role,
			v.PrincipalID(), "ServicePrincipal"); err != nil {
			t.Fatalf("assign role %s at %s: %v", a.role, a.scope, err)
		}
	}
	p := protection{rg: vaultGroup, vault: vault, name: diskID[strings.LastIndex(diskID, "/")+1:] + "-bi"}
	if _, err := c.PutInstance(ctx, vaultGroup, vault, p.name, client.InstanceBody(diskID, "local", pol.ID, sub+"/resourceGroups/"+snapGroup)); err != nil {
		t.Fatalf("protect %s: %v", diskID, err)
	}
	return p
}

// waitRecoveryPoints waits until the instance has n recovery points,
// failing at once if one of its backup jobs failed.
func waitRecoveryPoints(t testing.TB, ctx context.Context, c *client.Client, p protection, n int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rps, err := c.ListRecoveryPoints(ctx, p.rg, p.vault, p.name, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(rps) >= n {
			return
		}
		jobs, err := c.ListJobs(ctx, p.rg, p.vault, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.Properties.Operation == "Backup" && j.Properties.Status == "Failed" {
				t.Fatalf("backup job %s failed: %+v", j.Name, j.Properties.ErrorDetails)
			}
		}
	}
	t.Fatalf("no recovery point %d within 2 minutes", n)
}

// waitJobDone polls a job until it leaves InProgress.
func waitJobDone(t testing.TB, ctx context.Context, c *client.Client, rg, vault, id string) client.Job {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		j, err := c.GetJob(ctx, rg, vault, id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Properties.Status != "InProgress" && j.Properties.Status != "NotStarted" {
			return j
		}
	}
	t.Fatalf("job %s did not end within 2 minutes", id)
	return client.Job{}
}

// fileWriter writes files the way careful applications replace them:
// write a temporary file, fsync it, rename it over the final name, fsync
// the directory. It remembers every version that may have reached a
// final name and how many had durably (directory fsync returned). Beside
// them it appends to a log and rewrites scratch files without any fsync,
// so that the filesystem has unsynced data and metadata in flight too.
type fileWriter struct {
	dir   string
	names []string
	done  chan struct{}
	quit  chan struct{}

	mu       sync.Mutex
	versions map[string][]string // sha256 of each version renamed (or being renamed) into place
	synced   map[string]int      // versions of each name made durable
	total    int
	err      error
}

func startFileWriter(dir string, seed uint64) *fileWriter {
	w := &fileWriter{dir: dir, done: make(chan struct{}), quit: make(chan struct{}),
		versions: map[string][]string{}, synced: map[string]int{}}
	for d := range 4 {
		for f := range 32 {
			w.names = append(w.names, fmt.Sprintf("d%d/f%02d", d, f))
		}
	}
	go func() {
		defer close(w.done)
		err := w.run(rand.New(rand.NewPCG(seed, seed+1)))
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	}()
	return w
}

func (w *fileWriter) run(rng *rand.Rand) error {
	for d := range 4 {
		if err := os.MkdirAll(filepath.Join(w.dir, fmt.Sprintf("d%d", d)), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(w.dir, "noise"), 0o755); err != nil {
		return err
	}
	if err := syncDir(w.dir); err != nil {
		return err
	}
	noise, err := os.OpenFile(filepath.Join(w.dir, "noise", "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer noise.Close()
	for i := 0; ; i++ {
		select {
		case <-w.quit:
			return nil
		default:
		}
		name := w.names[rng.IntN(len(w.names))]
		data := randomBytes(rng, 512+rng.IntN(192<<10))
		sum := sha256.Sum256(data)
		final := filepath.Join(w.dir, name)
		tmp := final + ".tmp"
		if err := writeFileSync(tmp, data); err != nil {
			return err
		}
		w.mu.Lock()
		w.versions[name] = append(w.versions[name], hex.EncodeToString(sum[:]))
		n := len(w.versions[name])
		w.mu.Unlock()
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		if err := syncDir(filepath.Dir(final)); err != nil {
			return err
		}
		w.mu.Lock()
		w.synced[name] = n
		w.total++
		w.mu.Unlock()

		if _, err := noise.Write(randomBytes(rng, 4096)); err != nil {
			return err
		}
		if i%8 == 0 {
			scratch := filepath.Join(w.dir, "noise", fmt.Sprintf("scratch%d", rng.IntN(16)))
			if err := os.WriteFile(scratch, randomBytes(rng, rng.IntN(64<<10)), 0o644); err != nil {
				return err
			}
		}
	}
}

// stop stops the writer and returns its error.
func (w *fileWriter) stop() error {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// waitDurable waits until n more versions have become durable.
func (w *fileWriter) waitDurable(t *testing.T, n int) {
	t.Helper()
	w.mu.Lock()
	want := w.total + n
	w.mu.Unlock()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		got, err := w.total, w.err
		w.mu.Unlock()
		select {
		case <-w.done:
			t.Fatalf("writer stopped: %v", err)
		default:
		}
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("writer made %d of %d versions durable in a minute", got-want+n, n)
		}
	}
}

// durable returns, for each name, how many of its versions are durable.
func (w *fileWriter) durable() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.synced))
	for k, v := range w.synced {
		out[k] = v
	}
	return out
}

// check verifies the filesystem at root against the durable counts taken
// before its snapshot: each such file holds that version or a later one,
// and every file under a final name holds a version written to it. It
// returns the number of durable files checked.
func (w *fileWriter) check(t *testing.T, root string, durable map[string]int) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	found := map[string]int{} // name → index of the version found
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		vs, ok := w.versions[rel]
		if !ok {
			return nil // a temporary or noise file, or lost+found
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		i := slices.Index(vs, hex.EncodeToString(sum[:]))
		if i < 0 {
			t.Errorf("%s: %d bytes with sha256 %x, not any of the %d versions written to it", rel, len(data), sum, len(vs))
		}
		found[rel] = i
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	for name, n := range durable {
		i, ok := found[name]
		switch {
		case !ok:
			t.Errorf("%s: missing, but %d versions of it were durable before the snapshot", name, n)
		case i >= 0 && i < n-1:
			t.Errorf("%s: holds version %d, but version %d was durable before the snapshot", name, i+1, n)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return len(durable)
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	fillRandom(b, rng)
	return b
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

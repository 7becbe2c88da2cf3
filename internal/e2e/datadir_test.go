package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"coffer/internal/rbac"
)

// TestDataDirOwnerOnly checks defect 6: with a umask of 022 and a data
// directory that already exists with mode 0755, a flow that creates every
// kind of file (TLS files and keys, the metadata database and its WAL,
// disks, a backup's packs and snapshot, a restore) leaves nothing in the
// data directory that group or others can read, write or enter.
func TestDataDirOwnerOnly(t *testing.T) {
	old := syscall.Umask(0o022) // process-wide: e2e tests do not run in parallel
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := startDP(t, Options{DataDir: dir})
	const loc = "local"
	for _, g := range []string{"rg-disks", "rg-snaps", "rg-vault", "rg-restore"} {
		e.group(t, g, loc)
	}
	src := e.disk(t, "rg-disks", "data1", loc, "StandardSSD_LRS")
	e.write(t, "rg-disks", "data1", 0x5A, 0, 64<<20)
	v := e.vault(t, "rg-vault", "vault1", loc)
	principal := *v.Identity.PrincipalID
	pol := e.policy(t, "rg-vault", "vault1", "DiskPolicy", defaultPolicy())
	snapRG := "/subscriptions/" + e.sub + "/resourceGroups/rg-snaps"
	e.grantRole(t, principal, rbac.RoleDiskBackupReader, *src.ID)
	e.grantRole(t, principal, rbac.RoleDiskSnapshotContributor, snapRG)
	e.grantRole(t, principal, rbac.RoleDiskRestoreOperator, "/subscriptions/"+e.sub+"/resourceGroups/rg-restore")
	if _, err := e.protect("rg-vault", "vault1", "data1-bi", biBody(*src.ID, loc, *pol.ID, snapRG)); err != nil {
		t.Fatalf("protect: %v", err)
	}
	if j := e.backupNow(t, "rg-vault", "vault1", "data1-bi", "BackupHourly", "Default"); *j.Status != "Completed" {
		t.Fatalf("backup: %+v", j)
	}
	rps := e.recoveryPoints(t, "rg-vault", "vault1", "data1-bi", nil)
	if len(rps) != 1 {
		t.Fatalf("%d recovery points", len(rps))
	}
	target := "/subscriptions/" + e.sub + "/resourceGroups/rg-restore/providers/Microsoft.Compute/disks/restored"
	jid, err := e.restore("rg-vault", "vault1", "data1-bi", e.restoreRequest(*rps[0].Name, target, loc))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if j := e.waitJob(t, "rg-vault", "vault1", jid); *j.Status != "Completed" {
		t.Fatalf("restore job: %+v", j)
	}
	e.hash(t, "rg-restore", "restored") // reads through the restored disk

	kinds := map[string]bool{}
	var loose []string
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		kinds[strings.SplitN(filepath.ToSlash(rel), "/", 2)[0]] = true
		if info.Mode().Perm()&0o077 != 0 {
			loose = append(loose, rel+" "+info.Mode().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The flow must have created every kind of file, or the check proves
	// less than it says. (The signing and grant keys are in metadata.db,
	// sealed under master.key.)
	for _, k := range []string{".", "metadata.db", "metadata.db-wal", "admin.json", "master.key", "tls", "chunks", "volumes"} {
		if !kinds[k] {
			var have []string
			for k := range kinds {
				have = append(have, k)
			}
			sort.Strings(have)
			t.Errorf("the flow created no %s (the data dir holds %v)", k, have)
		}
	}
	if len(loose) > 0 {
		t.Errorf("%d entries of the data dir are open to group or others:\n%s", len(loose), strings.Join(loose, "\n"))
	}
}

package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestSweepStaleMounts: a SmallFilesystem whose test process is gone (a
// test killed before its cleanup) is found and unmounted by the next
// run's sweep, and one whose process lives is left alone. Before the
// sweep, killed runs left their loop mounts in the temporary directory.
func TestSweepStaleMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		Missing(t, "mount", "mounting a tmpfs needs root")
	}
	NeedProgram(t, "mount")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mountAs := func(pid int) string {
		dir := t.TempDir()
		mnt := filepath.Join(dir, "mnt")
		if err := os.Mkdir(mnt, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
			Missing(t, "mount", "cannot mount a tmpfs: "+err.Error()+": "+string(out))
		}
		t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
		return mnt
	}
	stale := mountAs(dead.Process.Pid)
	live := mountAs(os.Getpid())
	if got := StaleMounts(); !slices.Contains(got, stale) || slices.Contains(got, live) {
		t.Fatalf("stale mounts %q: want %s in them and not %s", got, stale, live)
	}
	sweepStaleMounts(t)
	if got := StaleMounts(); slices.Contains(got, stale) {
		t.Fatalf("%s still mounted after the sweep", stale)
	}
	if _, err := os.Stat(filepath.Dir(stale)); !os.IsNotExist(err) {
		t.Errorf("the stale mount's directory is still there: %v", err)
	}
	if !mounted(t, live) {
		t.Errorf("the sweep unmounted %s, whose process lives", live)
	}
}

func mounted(t *testing.T, mnt string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(strings.Split(string(b), "\n"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 4 && unescapeMountinfo(f[4]) == mnt
	})
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/tmp/a\040b/mnt`: "/tmp/a b/mnt", `/plain`: "/plain", `/tab\011x`: "/tab\tx", `/end\04`: `/end\04`} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// Package testenv tells tests what the machine they run on provides, and
// decides whether a test that needs a missing program skips or fails.
//
// By default a test whose outside program (qemu-img, nbdcopy, chromium,
// postgres, an S3 server, restic …) is missing skips with a clear message,
// so `go test ./...` passes on a machine with only Go. With
// COFFER_TEST_REQUIRE=all (set by .ci/run after installing them) — or a
// comma-separated list of program names — such a test fails instead.
package testenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Required reports whether a missing name must fail rather than skip.
func Required(name string) bool {
	req := os.Getenv("COFFER_TEST_REQUIRE")
	if req == "all" {
		return true
	}
	for _, r := range strings.Split(req, ",") {
		if strings.TrimSpace(r) == name {
			return true
		}
	}
	return false
}

// Missing skips the test, or fails it when name is required, saying why.
func Missing(t testing.TB, name, why string) {
	t.Helper()
	if Required(name) {
		t.Fatalf("%s is required (COFFER_TEST_REQUIRE=%s) but %s", name, os.Getenv("COFFER_TEST_REQUIRE"), why)
	}
	t.Skipf("skipping: %s (set COFFER_TEST_REQUIRE=all to make this a failure)", why)
}

// NeedProgram returns the path of the program, or skips/fails the test if it
// is not on PATH.
func NeedProgram(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name, name+" is not on PATH")
	}
	return p
}

// SmallFilesystem mounts a new filesystem of size bytes on a temporary
// directory for the test and returns the directory; it is unmounted when
// the test ends. kind is "tmpfs" (a sized tmpfs) or "ext4" (an ext4 image
// on a loop device, made with mkfs.ext4 -m 0 so that root has no reserved
// blocks either). It needs root and mount(8); without them the test skips,
// or fails under COFFER_TEST_REQUIRE (the name is "mount").
func SmallFilesystem(t testing.TB, kind string, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "mount", "mounting a small "+kind+" filesystem needs root")
	}
	NeedProgram(t, "mount")
	sweepOnce.Do(func() { sweepStaleMounts(t) })
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	// A test process killed before its cleanup leaves the mount behind:
	// the owner file lets the next run's sweep find and undo it.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	switch kind {
	case "tmpfs":
		cmd = exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", mnt)
	case "ext4":
		NeedProgram(t, "mkfs.ext4")
		img := filepath.Join(dir, "fs.img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, size); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v: %s", err, out)
		}
		cmd = exec.Command("mount", "-o", "loop", img, mnt)
	default:
		t.Fatalf("SmallFilesystem: unknown kind %q", kind)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		Missing(t, "mount", fmt.Sprintf("cannot mount a %s filesystem: %v: %s", kind, err, strings.TrimSpace(string(out))))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			// Something still holds it open: detach it lazily rather than
			// leave a mount behind.
			if out2, err2 := exec.Command("umount", "-l", mnt).CombinedOutput(); err2 != nil {
				t.Errorf("umount %s: %v: %s; %s", mnt, err, out, out2)
			}
		}
	})
	return mnt
}

// ownerFile, beside a SmallFilesystem's mount point, holds the ID of the
// test process that mounted it.
const ownerFile = "mounted-by"

var sweepOnce sync.Once

// sweepStaleMounts unmounts (lazily) the SmallFilesystems under the
// temporary directory whose test process is gone, and removes their
// directories: a test killed before its cleanup (a timeout, SIGKILL)
// leaves its loop mount and image behind, and nothing else would remove
// them.
func sweepStaleMounts(t testing.TB) {
	for _, mnt := range StaleMounts() {
		dir := filepath.Dir(mnt)
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Logf("unmount the stale test mount %s: %v: %s", mnt, err, out)
			continue
		}
		os.RemoveAll(dir)
		t.Logf("unmounted %s, left by a test process that is gone", mnt)
	}
}

// StaleMounts returns the mount points of the SmallFilesystems under
// os.TempDir() whose test process is gone.
func StaleMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	var stale []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mnt := unescapeMountinfo(f[4])
		if !strings.HasPrefix(mnt, tmp) || filepath.Base(mnt) != "mnt" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(filepath.Dir(mnt), ownerFile))
		if err != nil {
			continue // not a SmallFilesystem
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // its process is alive (or unknown)
		}
		stale = append(stale, mnt)
	}
	return stale
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Fill writes a new file in dir until its filesystem is full and returns
// the file's path; removing (or truncating) the file gives space back.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-*")
	if err != nil {
		t.Fatal(err)
	}
	path := f.Name()
	defer f.Close()
	// Allocate the bulk at once (no data written), then write the rest.
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		if n := int64(st.Bfree)*st.Bsize - 4<<20; n > 0 {
			if err := syscall.Fallocate(int(f.Fd()), 0, 0, n); err != nil && !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fallocate %s: %v", path, err)
			}
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // not zero: no filesystem may store it sparsely
	}
	for n := len(buf); n > 0; {
		if _, err := f.Write(buf[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				n /= 2 // fill the last partial megabyte too
				continue
			}
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	return path
}

// HaveProgram is NeedProgram for one part of a test: it returns the path of
// the program and true, or, when the program is not on PATH, fails the test
// if the program is required and otherwise logs that the part is left out
// and returns false, so that the rest of the test still runs.
func HaveProgram(t testing.TB, name string) (string, bool) {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p, true
	}
	if Required(name) {
		t.Fatalf("%s is required (COFFER_TEST_REQUIRE=%s) but is not on PATH", name, os.Getenv("COFFER_TEST_REQUIRE"))
	}
	t.Logf("leaving out what needs %s: it is not on PATH", name)
	return "", false
}

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/testenv"
)

// blockTools are the programs that turn a Coffer disk into a kernel block
// device with a filesystem on it: nbdfuse serves the disk's NBD export as
// a regular file, losetup makes that file a loop device.
type blockTools struct {
	nbdfuse, fusermount, losetup, mkfs, e2fsck, mount, umount string
}

// needBlockTools returns the tools, or skips (fails under
// COFFER_TEST_REQUIRE) when the machine cannot attach a disk: not root,
// no FUSE or loop devices, or a program missing.
func needBlockTools(t *testing.T) blockTools {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root", "losetup and mount need root")
	}
	for _, dev := range []string{"/dev/fuse", "/dev/loop-control"} {
		if _, err := os.Stat(dev); err != nil {
			testenv.Missing(t, strings.TrimPrefix(dev, "/dev/"), dev+" is missing")
		}
	}
	return blockTools{
		nbdfuse:    testenv.NeedProgram(t, "nbdfuse"),
		fusermount: testenv.NeedProgram(t, "fusermount3"),
		losetup:    testenv.NeedProgram(t, "losetup"),
		mkfs:       testenv.NeedProgram(t, "mkfs.ext4"),
		e2fsck:     testenv.NeedProgram(t, "e2fsck"),
		mount:      testenv.NeedProgram(t, "mount"),
		umount:     testenv.NeedProgram(t, "umount"),
	}
}

// blockDevice is a Coffer disk attached as /dev/loopN through nbdfuse.
type blockDevice struct {
	tools blockTools
	Dev   string // the loop device
	Mnt   string // where Mount mounts it

	fuseDir  string
	nbdfuse  *exec.Cmd
	exited   chan struct{}
	log      bytes.Buffer
	mounted  bool
	detached bool
}

// attach serves the NBD URL as a file with nbdfuse and makes it a loop
// device; the test's cleanup unmounts and detaches it.
func (bt blockTools) attach(t *testing.T, nbdURL string) *blockDevice {
	t.Helper()
	dir := t.TempDir()
	b := &blockDevice{tools: bt, fuseDir: filepath.Join(dir, "fuse"), Mnt: filepath.Join(dir, "mnt"), exited: make(chan struct{})}
	for _, d := range []string{b.fuseDir, b.Mnt} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	pidfile := filepath.Join(dir, "nbdfuse.pid")
	b.nbdfuse = exec.Command(bt.nbdfuse, "-P", pidfile, filepath.Join(b.fuseDir, "disk"), nbdURL)
	b.nbdfuse.Stdout, b.nbdfuse.Stderr = &b.log, &b.log
	if err := b.nbdfuse.Start(); err != nil {
		t.Fatalf("start nbdfuse: %v", err)
	}
	go func() {
		b.nbdfuse.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() { b.Detach(t) })
	// nbdfuse writes its pid file once the file is served.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if st, err := os.Stat(pidfile); err == nil && st.Size() > 0 {
			break
		}
		select {
		case <-b.exited:
			t.Fatalf("nbdfuse exited before serving the disk: %s", b.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("nbdfuse did not serve the disk within 30 s: %s", b.log.String())
		}
	}
	b.Dev = strings.TrimSpace(run(t, bt.losetup, "-f", "--show", filepath.Join(b.fuseDir, "disk")))
	return b
}

// Mount mounts the device's ext4 filesystem on b.Mnt with options.
func (b *blockDevice) Mount(t *testing.T, options string) {
	t.Helper()
	run(t, b.tools.mount, "-t", "ext4", "-o", options, b.Dev, b.Mnt)
	b.mounted = true
}

// Unmount unmounts it.
func (b *blockDevice) Unmount(t *testing.T) {
	t.Helper()
	run(t, b.tools.umount, b.Mnt)
	b.mounted = false
}

// Fsck runs e2fsck with args on the device and returns its exit status
// and output (exit 0: clean; 1: fixed; 4: errors left; 8+: failed).
func (b *blockDevice) Fsck(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(b.tools.e2fsck, append(args, b.Dev)...).CombinedOutput()
	if err == nil {
		return 0, string(out)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("e2fsck: %v", err)
	}
	return ee.ExitCode(), string(out)
}

// Detach unmounts, frees the loop device and stops nbdfuse, reporting
// (not failing on) what it cannot undo so that every step is tried. The
// test's cleanup calls it too; a second call does nothing.
func (b *blockDevice) Detach(t *testing.T) {
	if b.detached {
		return
	}
	b.detached = true
	if b.mounted {
		if out, err := exec.Command(b.tools.umount, b.Mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", b.Mnt, err, out)
		}
	}
	if b.Dev != "" {
		if out, err := exec.Command(b.tools.losetup, "-d", b.Dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", b.Dev, err, out)
		}
	}
	if out, err := exec.Command(b.tools.fusermount, "-u", b.fuseDir).CombinedOutput(); err != nil {
		t.Logf("fusermount3 -u %s: %v %s", b.fuseDir, err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-b.exited:
	case <-ctx.Done():
		b.nbdfuse.Process.Kill()
		<-b.exited
		t.Errorf("nbdfuse did not exit after fusermount3 -u: %s", b.log.String())
	}
}

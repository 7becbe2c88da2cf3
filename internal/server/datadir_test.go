package server

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"coffer/internal/testenv"
)

func openTest(t *testing.T, dir string, log *bytes.Buffer) (*Server, error) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(log, nil))
	return Open(context.Background(), Config{DataDir: dir, Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0", TLS: true, Logger: logger})
}

// looseEntries lists the entries under dir (symlinks aside) that group or
// others may use.
func looseEntries(t *testing.T, dir string) []string {
	t.Helper()
	var loose []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm()&0o077 != 0 {
			loose = append(loose, path+" "+info.Mode().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return loose
}

// TestOpenTightensLooseDataDir: a data dir written with loose modes (by an
// older version, or copied without care) is made owner-only at start, and
// the log says what changed; a symbolic link's target is left alone.
func TestOpenTightensLooseDataDir(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022))
	dir := filepath.Join(t.TempDir(), "data")
	var log bytes.Buffer
	s, err := openTest(t, dir, &log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What an older version left: 0755 directories, 0644 files, 0444 packs.
	pack := filepath.Join(dir, "chunks", "packs", "ab", "abcdef")
	if err := os.MkdirAll(filepath.Dir(pack), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pack, []byte("pack"), 0o444); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		} else if path == pack {
			mode = 0o444
		}
		n++
		return os.Chmod(path, mode)
	})
	if len(looseEntries(t, dir)) != n {
		t.Fatal("the test did not loosen the tree")
	}

	log.Reset()
	s, err = openTest(t, dir, &log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if loose := looseEntries(t, dir); len(loose) > 0 {
		t.Errorf("after start, open to group or others:\n%s", strings.Join(loose, "\n"))
	}
	if fi, err := os.Stat(pack); err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("pack: %v %v, want -r-------- (still read-only)", fi.Mode(), err)
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("a symlink's target outside the data dir was changed: %v %v", fi.Mode(), err)
	}
	if !strings.Contains(log.String(), "tightened permissions in the data dir") || !strings.Contains(log.String(), "changed=") {
		t.Errorf("the log does not say what was tightened:\n%s", log.String())
	}
}

// TestOpenRefusesDataDirItCannotTighten: when a loose entry cannot be
// changed (here an immutable file), the server does not start, and the
// error names the file and says what to do.
func TestOpenRefusesDataDirItCannotTighten(t *testing.T) {
	chattr := testenv.NeedProgram(t, "chattr")
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "stray")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(chattr, "+i", f).CombinedOutput(); err != nil {
		testenv.Missing(t, "chattr", "chattr +i failed here (not root, or no support in this filesystem): "+strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command(chattr, "-i", f).Run() })
	var log bytes.Buffer
	s, err := openTest(t, dir, &log)
	if err == nil {
		s.Close()
		t.Fatal("the server started with a data dir it could not make owner-only")
	}
	for _, want := range []string{f, "0644", "cannot be made owner-only", "chmod -R go-rwx"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata.db")); err == nil {
		t.Error("the refused start created metadata.db")
	}
}

// BenchmarkPrepareDataDir measures the start-up walk over a data dir of
// 10,000 packs in 256 directories that are already owner-only (the usual
// case: nothing to change).
func BenchmarkPrepareDataDir(b *testing.B) {
	dir := b.TempDir()
	for i := range 10000 {
		p := filepath.Join(dir, "chunks", "packs", fmt.Sprintf("%02x", i%256), fmt.Sprintf("%016x", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o400); err != nil {
			b.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	for b.Loop() {
		if err := prepareDataDir(dir, log); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNewEmptyDataDirQuiet: a new, empty data dir made with the umask's
// mode (mkdir DIR; coffer serve --data DIR) is made owner-only without a
// warning, since nothing in it was ever exposed.
func TestNewEmptyDataDirQuiet(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	s, err := openTest(t, dir, &log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if loose := looseEntries(t, dir); len(loose) != 0 {
		t.Fatalf("loose entries: %v", loose)
	}
	if strings.Contains(log.String(), "tightened") {
		t.Fatalf("a new empty data dir was reported as tightened:\n%s", log.String())
	}
}

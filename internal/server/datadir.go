package server

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Everything under the data directory is owner-only: the metadata database
// holds live grant tokens, the key files sign every token, and the packs and
// volumes are the users' disks. Each package creates its files and
// directories with these modes, whatever the parent's mode and the umask;
// prepareDataDir tightens what an older version, a restore from backup or
// an operator left looser.

// looseBits are the permission bits a data-dir entry must not have.
const looseBits fs.FileMode = 0o077

// prepareDataDir creates the data directory (0700) if needed and makes it
// and everything below it owner-only: it removes the group and other bits
// of every file and directory that has any, logging what it changed, and
// refuses (with the path and the reason) when it cannot. Symbolic links are
// neither followed nor changed.
func prepareDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", dir, err)
	}
	type change struct {
		path     string
		from, to fs.FileMode
	}
	var changed []change
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked (a temporary file)
		}
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		if perm&looseBits == 0 {
			return nil
		}
		want := perm &^ looseBits
		if d.IsDir() {
			want |= 0o700
		}
		if err := os.Chmod(path, want); err != nil {
			return fmt.Errorf("%s is %04o (open to group or others) and cannot be made owner-only: %w", path, perm, err)
		}
		changed = append(changed, change{path, perm, want})
		return nil
	})
	if err != nil {
		return fmt.Errorf("data dir %s must be owner-only: %w; fix it (chmod -R go-rwx %s) or run Coffer as the data dir's owner", dir, err, dir)
	}
	if len(changed) == 0 {
		return nil
	}
	if len(changed) == 1 && changed[0].path == dir {
		if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
			// A new, empty data dir made with the umask's mode (mkdir
			// DIR; coffer serve --data DIR): nothing was exposed.
			log.Debug("made the new data dir owner-only", "dir", dir, "from", fmt.Sprintf("%04o", changed[0].from))
			return nil
		}
	}
	const shown = 10
	var examples []string
	for _, c := range changed[:min(len(changed), shown)] {
		examples = append(examples, fmt.Sprintf("%s %04o->%04o", c.path, c.from, c.to))
	}
	log.Warn("tightened permissions in the data dir: files and directories were open to group or others",
		"dir", dir, "changed", len(changed), "examples", examples)
	return nil
}

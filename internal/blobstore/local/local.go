// Package local implements blobstore.Store on a directory of the local file
// system.
//
// An object named "a/b/c" is the file DIR/a/b/c. Writes are durable: the data
// goes to a temporary file in the destination directory, which is synced,
// closed, made read-only and renamed over the final name, and then the
// directory itself is synced. Files are owner-only (0400) and directories
// 0700, whatever the umask: the objects are users' data. Temporary files start with ".tmp-" and are never
// listed. Errors the caller cannot fix by retrying (ENOSPC, EPERM, EACCES,
// EROFS, EDQUOT) are marked permanent: they satisfy
// interface{ Permanent() bool } through errors.As. A write that fails for
// lack of space (ENOSPC, EDQUOT) is also capacity.ErrNoSpace.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"coffer/internal/blobstore"
	"coffer/internal/capacity"
)

// tmpPrefix starts the names of temporary files; Put rejects such names.
const tmpPrefix = ".tmp-"

// ErrInvalidName is blobstore.ErrInvalidName, kept for callers of this
// package.
var ErrInvalidName = blobstore.ErrInvalidName

// PermanentError marks a failure that retrying will not fix.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return e.Err.Error() + " (permanent)" }

// Unwrap returns the underlying error, so errors.Is(err, syscall.ENOSPC) works.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent reports true.
func (e *PermanentError) Permanent() bool { return true }

// Store is a directory-backed blob store.
type Store struct {
	dir string
	fds fdCache // open files for GetRange
	// Space, when set, is told of every no-space failure.
	Space *capacity.Monitor
}

var (
	_ blobstore.Store       = (*Store)(nil)
	_ blobstore.RangeReader = (*Store)(nil)
	_ blobstore.Prefetcher  = (*Store)(nil)
)

// Open returns a Store rooted at dir, creating the directory if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open blob dir %s: %w", dir, classify(err))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open blob dir %s: %w", dir, err)
	}
	return &Store{dir: abs}, nil
}

// Dir returns the root directory.
func (s *Store) Dir() string { return s.dir }

// Path returns the file path of the object name (which need not exist).
func (s *Store) Path(name string) string {
	return filepath.Join(s.dir, filepath.FromSlash(name))
}

// validName checks a name against the contract (blobstore.CheckName) and
// refuses segments with the temporary-file prefix.
func validName(name string) error {
	if err := blobstore.CheckName(name); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(seg, tmpPrefix) {
			return fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	return nil
}

// classify marks errors that retrying cannot fix as permanent.
func classify(err error) error {
	for _, e := range []syscall.Errno{syscall.ENOSPC, syscall.EPERM, syscall.EACCES, syscall.EROFS, syscall.EDQUOT} {
		if errors.Is(err, e) {
			return &PermanentError{Err: err}
		}
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// mkdirs creates dir and any missing parents below the root, syncing the
// parent of every directory it creates.
func (s *Store) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir && len(parent) >= len(s.dir) {
		if err := s.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// Put writes data under name durably and atomically.
func (s *Store) Put(ctx context.Context, name string, data []byte) (err error) {
	if err := validName(name); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("put %s: %w", name, classify(s.Space.Note(capacity.Classify(err, "the chunk store", s.dir))))
		}
	}()
	final := s.Path(name)
	dir := filepath.Dir(final)
	if err := s.mkdirs(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := writeData(f, data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o400); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	ok = true
	s.forget(name)
	return syncDir(dir)
}

func notFound(op, name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %s: %w", op, name, blobstore.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, name, classify(err))
}

// openFile opens the object's file; a missing file or a directory is
// blobstore.ErrNotFound.
func (s *Store) openFile(name string) (*os.File, error) {
	f, err := os.Open(s.Path(name))
	if err != nil {
		return nil, notFound("get", name, err)
	}
	if fi, err := f.Stat(); err != nil || fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", name, blobstore.ErrNotFound)
	}
	return f, nil
}

// Get reads the whole object.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	f, err := s.openFile(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	return b, nil
}

// GetRange reads exactly n bytes at off.
func (s *Store) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	return s.ReadRange(ctx, name, off, n, nil)
}

// ReadRange is GetRange into buf's memory when it is large enough
// (blobstore.RangeReader). Reads of at least directReadMin bytes into a
// buffer from directio.Buffer bypass the page cache.
func (s *Store) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) ([]byte, error) {
	if err := validName(name); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("get %s [%d,+%d]: negative range", name, off, n)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	cf, err := s.acquire(name)
	if err != nil {
		return nil, err
	}
	defer s.release(cf)
	if off+n > cf.size {
		return nil, fmt.Errorf("get %s [%d,+%d]: object is %d bytes: %w", name, off, n, cf.size, io.ErrUnexpectedEOF)
	}
	b, err := s.readRange(cf, off, n, buf)
	if err != nil {
		return nil, fmt.Errorf("get %s [%d,+%d]: %w", name, off, n, err)
	}
	return b, nil
}

// Prefetch asks the kernel to read [off, off+n) of object name into the
// page cache (blobstore.Prefetcher): its small ranged reads, which go
// through the page cache, then find it there. Packs are written with
// O_DIRECT, so without it every such read waits on the disk. It returns
// once the range's last page is read (a buffered read of that page waits
// for the read-ahead that covers it), so that a caller hinting one range
// at a time keeps at most one range's read-ahead on the disk.
func (s *Store) Prefetch(ctx context.Context, name string, off, n int64) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("prefetch %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("prefetch %s: %w", name, err)
	}
	cf, err := s.acquire(name)
	if err != nil {
		return err
	}
	defer s.release(cf)
	if err := unix.Fadvise(int(cf.f.Fd()), off, n, unix.FADV_WILLNEED); err != nil {
		return fmt.Errorf("prefetch %s [%d,+%d]: %w", name, off, n, err)
	}
	if end := min(off+n, cf.size); end > off {
		var last [1]byte
		if _, err := cf.f.ReadAt(last[:], end-1); err != nil {
			return fmt.Errorf("prefetch %s [%d,+%d]: wait for the read-ahead: %w", name, off, n, err)
		}
	}
	return nil
}

// Stat returns the object's size.
func (s *Store) Stat(ctx context.Context, name string) (blobstore.Info, error) {
	if err := validName(name); err != nil {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", name, err)
	}
	fi, err := os.Stat(s.Path(name))
	if err != nil {
		return blobstore.Info{}, notFound("stat", name, err)
	}
	if fi.IsDir() {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", name, blobstore.ErrNotFound)
	}
	return blobstore.Info{Name: name, Size: fi.Size()}, nil
}

// List calls fn for every object whose name starts with prefix, in lexical
// order of names.
func (s *Store) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	// Walk only the deepest directory the prefix names in full.
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
	}
	root := s.dir
	if base != "" {
		if err := validName(base); err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		root = s.Path(base)
	}
	var infos []blobstore.Info
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while listing
		}
		if err != nil {
			return err
		}
		infos = append(infos, blobstore.Info{Name: name, Size: fi.Size()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	for _, in := range infos {
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object and syncs its directory.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	p := s.Path(name)
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("delete %s: %w", name, blobstore.ErrNotFound)
	}
	if err := os.Remove(p); err != nil {
		return notFound("delete", name, err)
	}
	s.forget(name)
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: %w", name, classify(err))
	}
	return nil
}

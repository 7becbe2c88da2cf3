//go:build linux

package nbdtest

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"coffer/internal/nbd"
)

// File is an nbd.Backend over a sparse regular file. Trim and WriteZeroes
// punch holes; BlockStatus reports holes with SEEK_DATA/SEEK_HOLE.
type File struct {
	f    *os.File
	size int64
}

var (
	_ nbd.Backend       = (*File)(nil)
	_ nbd.Writer        = (*File)(nil)
	_ nbd.Flusher       = (*File)(nil)
	_ nbd.Trimmer       = (*File)(nil)
	_ nbd.Zeroer        = (*File)(nil)
	_ nbd.BlockStatuser = (*File)(nil)
)

// CreateFile creates (or truncates) path as a sparse file of size bytes.
func CreateFile(path string, size int64) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create backing file: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("size backing file: %w", err)
	}
	return &File{f: f, size: size}, nil
}

// OpenFile opens an existing file; its current length is the export size.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open backing file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat backing file: %w", err)
	}
	return &File{f: f, size: st.Size()}, nil
}

// Name returns the path of the backing file.
func (f *File) Name() string { return f.f.Name() }

// Close closes the backing file.
func (f *File) Close() error { return f.f.Close() }

// Size returns the export size.
func (f *File) Size() int64 { return f.size }

// ReadAt reads with pread.
func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// WriteAt writes with pwrite.
func (f *File) WriteAt(p []byte, off int64) (int, error) { return f.f.WriteAt(p, off) }

// Flush fsyncs the file.
func (f *File) Flush() error { return f.f.Sync() }

// Trim punches a hole.
func (f *File) Trim(off, length int64) error { return f.punch(off, length) }

// WriteZeroes punches a hole, which reads back as zeroes.
func (f *File) WriteZeroes(off, length int64) error { return f.punch(off, length) }

func (f *File) punch(off, length int64) error {
	if length == 0 {
		return nil
	}
	err := unix.Fallocate(int(f.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if err != nil {
		return fmt.Errorf("punch hole at %d+%d: %w", off, length, err)
	}
	return nil
}

// BlockStatus walks data and holes with SEEK_DATA/SEEK_HOLE. Holes read as
// zeroes. It reports at most 1024 extents per call.
func (f *File) BlockStatus(off, length int64) ([]nbd.Extent, error) {
	fd := int(f.f.Fd())
	end := min(off+length, f.size)
	var exts []nbd.Extent
	add := func(s, e int64, hole bool) {
		if e > s {
			exts = append(exts, nbd.Extent{Offset: s, Length: e - s, Hole: hole, Zero: hole})
		}
	}
	for pos := off; pos < end && len(exts) < 1024; {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			add(pos, end, true) // only a hole remains
			break
		}
		if err != nil {
			return nil, fmt.Errorf("seek data from %d: %w", pos, err)
		}
		if data > pos {
			add(pos, min(data, end), true)
			pos = min(data, end)
			continue
		}
		hole, err := unix.Seek(fd, pos, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("seek hole from %d: %w", pos, err)
		}
		add(pos, min(hole, end), false)
		pos = min(hole, end)
	}
	return exts, nil
}

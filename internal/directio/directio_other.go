//go:build !linux

package directio

import (
	"errors"
	"fmt"
	"os"
)

// Open reports errors.ErrUnsupported: direct I/O is used on Linux only.
func Open(path string, flag int) (*os.File, error) {
	return nil, fmt.Errorf("open %s for direct I/O: %w", path, errors.ErrUnsupported)
}

// Refused reports whether err means the file system refused direct I/O.
func Refused(err error) bool { return errors.Is(err, errors.ErrUnsupported) }

// Map returns n zeroed, aligned bytes; on this platform they are ordinary
// Go memory (Buffer), which Unmap leaves to the garbage collector.
func Map(n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("map %d bytes: invalid size", n)
	}
	return Buffer(n), nil
}

// MapHuge is Map (huge pages are asked for on Linux only).
func MapHuge(n int) ([]byte, error) { return Map(n) }

// Unmap releases memory from Map (here: nothing to do).
func Unmap(b []byte) error { return nil }

// datasync writes the file to the device (there is no fdatasync here).
func datasync(f *os.File) error { return f.Sync() }

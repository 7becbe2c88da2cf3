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

// SetDirect reports errors.ErrUnsupported: direct I/O is used on Linux
// only.
func SetDirect(f *os.File, on bool) error {
	return fmt.Errorf("direct I/O on %s: %w", f.Name(), errors.ErrUnsupported)
}

// Refused reports whether err means the file system refused direct I/O.
func Refused(err error) bool { return errors.Is(err, errors.ErrUnsupported) }

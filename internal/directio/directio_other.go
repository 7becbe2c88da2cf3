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

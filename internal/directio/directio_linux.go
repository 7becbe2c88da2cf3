package directio

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Open opens path with flag (os.O_RDONLY, os.O_WRONLY or os.O_RDWR, and no
// O_CREATE) for direct I/O. A file system that refuses is
// errors.ErrUnsupported.
func Open(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		return nil, fmt.Errorf("open %s for direct I/O: %w", path, errors.ErrUnsupported)
	}
	return f, err
}

// Refused reports whether err from a direct transfer means that the file
// system does not take direct I/O on this file after all (some accept the
// flag and refuse the transfer), so that the caller should retry it
// buffered.
func Refused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, errors.ErrUnsupported)
}

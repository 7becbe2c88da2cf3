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

// SetDirect switches direct I/O on or off for the open file f. A file
// system that refuses is errors.ErrUnsupported.
func SetDirect(f *os.File, on bool) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("direct I/O on %s: %w", f.Name(), errors.ErrUnsupported)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		var flags int
		if flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0); ferr != nil {
			return
		}
		if on {
			flags |= unix.O_DIRECT
		} else {
			flags &^= unix.O_DIRECT
		}
		_, ferr = unix.FcntlInt(fd, unix.F_SETFL, flags)
	}); err != nil {
		ferr = err
	}
	if errors.Is(ferr, unix.EINVAL) {
		return fmt.Errorf("direct I/O on %s: %w", f.Name(), errors.ErrUnsupported)
	}
	if ferr != nil {
		return fmt.Errorf("direct I/O on %s: %w", f.Name(), ferr)
	}
	return nil
}

// Refused reports whether err from a direct transfer means that the file
// system does not take direct I/O on this file after all (some accept the
// flag and refuse the transfer), so that the caller should retry it
// buffered.
func Refused(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, errors.ErrUnsupported)
}

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

// Map returns n zeroed bytes of memory outside the Go heap, aligned for
// direct transfers (an anonymous private mapping). Unmap returns it to the
// system; the garbage collector neither moves, counts nor frees it. Use it
// for large buffers that live as long as one operation, so that they do not
// raise the heap's growth target (which lets garbage pile up to their size)
// and leave no resident memory behind.
func Map(n int) ([]byte, error) {
	if n <= 0 {
		return nil, fmt.Errorf("map %d bytes: %w", n, unix.EINVAL)
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("map %d bytes: %w", n, err)
	}
	return b, nil
}

// MapHuge is Map for a buffer that is filled whole, front to back, such as
// a pack being assembled: the mapping asks for transparent huge pages
// (MADV_HUGEPAGE; systems whose huge pages are off ignore it), so that
// filling it faults once per 2 MiB instead of once per 4 KiB page and a
// direct transfer from it pins a few pages instead of thousands. Each
// page fault costs a trap into the kernel, which on a virtual machine is
// the larger part of touching fresh memory (docs/design.md, "Issue 14's
// figures").
func MapHuge(n int) ([]byte, error) {
	b, err := Map(n)
	if err != nil {
		return nil, err
	}
	// Only a hint: a kernel built without transparent huge pages refuses
	// it (EINVAL) and the mapping stays as Map made it.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b, nil
}

// Unmap releases memory from Map. b (and every slice of it) must not be
// used afterwards: an access faults.
func Unmap(b []byte) error {
	if err := unix.Munmap(b); err != nil {
		return fmt.Errorf("unmap %d bytes: %w", len(b), err)
	}
	return nil
}

// datasync writes the file's data (and what reading it back needs) to
// the device.
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

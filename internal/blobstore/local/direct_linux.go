package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Large transfers bypass the page cache (O_DIRECT). Objects of at least
// directMin bytes whose memory starts on a directAlign boundary are written
// that way: the aligned prefix goes from the caller's buffer straight to
// the device, then the tail (under directAlign bytes) is written through
// the page cache, and the file is synced as always. Ranged reads of at
// least directReadMin bytes are read that way into a new aligned buffer.
// Packs are written once and read back rarely and in bulk (restore,
// verify), so caching them helps little, while copying them into and out
// of the page cache was the largest single CPU cost of snapshots and
// restores on the development machine (a virtual machine whose fresh
// page-cache pages are slow to touch): docs/design.md, "Direct I/O". Where
// O_DIRECT is refused (tmpfs, some FUSE or network file systems) the same
// calls go through the page cache.
const (
	directMin     = 1 << 20
	directReadMin = 256 << 10
	directAlign   = 4096
)

// writeData writes data to the new, empty file f from offset 0.
func writeData(f *os.File, data []byte) error {
	n := len(data) &^ (directAlign - 1)
	if len(data) < directMin || uintptr(unsafe.Pointer(unsafe.SliceData(data)))%directAlign != 0 {
		_, err := f.Write(data)
		return err
	}
	done, err := writeDirect(f, data[:n])
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data[done:], int64(done))
	return err
}

// writeDirect writes the aligned data at offset 0 with O_DIRECT and
// returns how many bytes it wrote; 0 with a nil error means O_DIRECT is not
// available on f and nothing was written. f's flags are restored.
func writeDirect(f *os.File, data []byte) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var flags int
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0)
		if ferr == nil {
			_, ferr = unix.FcntlInt(fd, unix.F_SETFL, flags|unix.O_DIRECT)
		}
	}); err != nil || ferr != nil {
		return 0, nil
	}
	restore := func() error {
		var ferr error
		if err := rc.Control(func(fd uintptr) { _, ferr = unix.FcntlInt(fd, unix.F_SETFL, flags) }); err != nil {
			return err
		}
		return ferr
	}
	n, err := f.WriteAt(data, 0)
	if rerr := restore(); err == nil && rerr != nil {
		return n, rerr
	}
	if errors.Is(err, unix.EINVAL) && n == 0 {
		return 0, nil // the file system takes O_DIRECT at open but not at write
	}
	return n, err
}

// readRange reads n bytes at off of cf into a new slice.
func (s *Store) readRange(cf *cachedFile, off, n int64) ([]byte, error) {
	if n >= directReadMin {
		cf.directOnce.Do(func() { cf.direct = openDirect(cf) })
		if cf.direct != nil {
			return readDirect(cf.direct, off, n)
		}
	}
	b := make([]byte, n)
	if _, err := cf.f.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}

// openDirect opens cf's file again for direct I/O, or returns nil when the
// file system refuses or the path no longer names the same file.
func openDirect(cf *cachedFile) *os.File {
	f, err := os.OpenFile(cf.f.Name(), os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil
	}
	if dev, ino, ok := fileID(fi); !ok || dev != cf.dev || ino != cf.ino {
		f.Close()
		return nil
	}
	return f
}

// readDirect reads n bytes at off with the O_DIRECT file f: it reads the
// enclosing aligned range into an aligned buffer and returns the part asked
// for.
func readDirect(f *os.File, off, n int64) ([]byte, error) {
	start := off &^ (directAlign - 1)
	end := (off + n + directAlign - 1) &^ (directAlign - 1)
	buf := make([]byte, end-start+directAlign)
	shift := int((directAlign - uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%directAlign) % directAlign)
	buf = buf[shift : shift+int(end-start)]
	got, err := f.ReadAt(buf, start) // short only at the end of the file
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if int64(got) < off+n-start {
		return nil, fmt.Errorf("read %d bytes at %d: %w", n, off, io.ErrUnexpectedEOF)
	}
	return buf[off-start : off-start+n : off-start+n], nil
}

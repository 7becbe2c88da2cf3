package local

import (
	"errors"
	"fmt"
	"io"
	"os"

	"coffer/internal/directio"
)

// Large transfers bypass the page cache (O_DIRECT). Objects of at least
// directMin bytes whose memory starts on a directio.Align boundary are
// written that way: the aligned prefix goes from the caller's buffer
// straight to the device, then the tail (under directio.Align bytes) is
// written through the page cache, and the file is synced as always. Ranged reads of at
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
)

// writeData writes data to the new, empty file f from offset 0, through a
// second, direct descriptor of the same file when data is large enough.
func writeData(f *os.File, data []byte) error {
	if len(data) >= directMin {
		if d, err := directio.Open(f.Name(), os.O_WRONLY); err == nil {
			_, _, err := directio.WriteAt(d, f, data, 0)
			if cerr := d.Close(); err == nil {
				err = cerr
			}
			return err
		}
	}
	_, err := f.WriteAt(data, 0)
	return err
}

// readRange reads n bytes at off of cf, into buf's memory when it is
// large enough.
func (s *Store) readRange(cf *cachedFile, off, n int64, buf []byte) ([]byte, error) {
	if n >= directReadMin {
		cf.directOnce.Do(func() { cf.direct = openDirect(cf) })
		if cf.direct != nil {
			return readDirect(cf.direct, off, n, buf)
		}
	}
	b := buf
	if int64(cap(b)) < n {
		b = make([]byte, n)
	}
	b = b[:n:n]
	if _, err := cf.f.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}

// openDirect opens cf's file again for direct I/O, or returns nil when the
// file system refuses or the path no longer names the same file.
func openDirect(cf *cachedFile) *os.File {
	f, err := directio.Open(cf.f.Name(), os.O_RDONLY)
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

// readDirect reads n bytes at off with the direct-I/O file f: it reads the
// enclosing aligned range into an aligned buffer (buf when it is aligned
// and large enough) and returns the part asked for.
func readDirect(f *os.File, off, n int64, buf []byte) ([]byte, error) {
	start := off &^ (directio.Align - 1)
	end := (off + n + directio.Align - 1) &^ (directio.Align - 1)
	if int64(cap(buf)) < end-start || !directio.Aligned(buf[:0], 0) {
		buf = directio.Buffer(int(end - start))
	}
	buf = buf[:end-start]
	got, err := f.ReadAt(buf, start) // short only at the end of the file
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if int64(got) < off+n-start {
		return nil, fmt.Errorf("read %d bytes at %d: %w", n, off, io.ErrUnexpectedEOF)
	}
	return buf[off-start : off-start+n : off-start+n], nil
}

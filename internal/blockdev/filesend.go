package blockdev

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// TryFileRunsAt is TryReadSparseAt for a caller that sends the data
// straight from the volume's file (sendfile) instead of reading it into
// memory: it cuts [off, off+n) into the holes of the volume's map and the
// runs of blocks that may hold data, and returns the file, in which the
// data runs lie at the same offsets as in the volume. It reports ok only
// when the range lies within the volume, the volume is not hydrating and
// every page of the data runs is in the page cache (cachestat), so that
// sending them does not wait for the disk; otherwise the caller uses
// TryReadSparseAt or ReadSparseAt.
//
// f is the volume's own file: the caller must reach its descriptor only
// through f.SyscallConn, which fails once the volume has closed it, and
// must not keep it beyond the reply. What it sends is the file's content
// when it sends it: a write that completes meanwhile may show in the
// reply, as it may in a read that overlaps it.
func (v *Volume) TryFileRunsAt(off, n int64) (f *os.File, runs []Extent, ok bool) {
	if noCachestat.Load() {
		return nil, nil, false
	}
	v.mu.Lock()
	ready := !v.closed && v.hyd == nil && off >= 0 && n > 0 && off <= v.size && n <= v.size-off
	if ready {
		runs = v.allocRunsLocked(off, n)
	}
	v.mu.Unlock()
	if !ready {
		return nil, nil, false
	}
	for _, x := range runs {
		if !x.Hole && !v.cached(x.Offset, x.Length) {
			return nil, nil, false
		}
	}
	v.fg.touch(v.e.opts.Clock.Now())
	return v.f, runs, true
}

// noCachestat is set once cachestat(2) proved missing (kernels before
// 6.5): TryFileRunsAt then refuses at once.
var noCachestat atomic.Bool

// cached reports whether every page of [off, off+n) of the volume's file
// is in the page cache.
func (v *Volume) cached(off, n int64) bool {
	rc, err := v.f.SyscallConn()
	if err != nil {
		return false
	}
	page := int64(os.Getpagesize())
	want := uint64((off+n+page-1)/page - off/page)
	var st unix.Cachestat_t
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cerr = unix.Cachestat(uint(fd), &unix.CachestatRange{Off: uint64(off), Len: uint64(n)}, &st, 0)
	}); err != nil {
		return false
	}
	if cerr == unix.ENOSYS {
		noCachestat.Store(true)
	}
	return cerr == nil && st.Cache >= want
}

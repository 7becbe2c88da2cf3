package blockdev

import (
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// writebackEvery is how many bytes a bulk writer (restore, hydration)
// writes between two early-writeback requests. Each request queues all it
// finds dirty at once, and a read that arrives behind it waits for all of
// it: on the development VM, reads of a hydrating volume took p99 11-12 ms
// and at most 37-39 ms with 64 MiB between requests, p99 5.4-5.7 ms and at
// most 12-14 ms with 8 MiB, and hydration alone was no slower (2.4-2.6 s
// for the 4 GiB bench image either way).
const writebackEvery = 8 << 20

// restoreSyncEvery is how many bytes a restore writes with direct I/O
// between two background fdatasyncs of its file (writeback.syncEvery).
// Direct writes leave no dirty page in this kernel, but on a virtual disk
// they may sit in the host's cache, and the restore's final fsync waits
// for the host to write back whatever it still holds: on the development
// VM 0.2-0.35 s after a 512 MiB restore at load 8, 1.0-1.5 s after a 2 GiB
// one whose writes ended early (docs/design.md, "Session perf14ab"), time
// in which the restore neither reads nor decodes, and four restores at
// once each waited so at the end of their files together. Syncing as it
// goes has the host write back while the restore still decodes and leaves
// the final fsync the last part only (0-0.02 s; "Session perf14ap"). 16
// MiB keeps that true of small files too: the 64 MiB files of the bench's
// 4 restores at once at 1 GiB got none before their end with 64 MiB.
const restoreSyncEvery = 16 << 20

// writeback starts the kernel's writeback of a file's dirty pages early,
// from a goroutine of its own, while a bulk write goes on, so that the
// final fsync (or checkpoint fdatasync) finds little left to write and the
// disk works while the CPUs decompress. It is only a hint: its errors are
// ignored, durability still comes from the fsync that follows.
//
// With syncEvery > 0 it also fdatasyncs the file, from the same goroutine
// and without holding up any write, each time another syncEvery bytes
// were written with direct I/O (wroteDirect), so that the final fsync
// finds little left on a disk that caches direct writes (restoreSyncEvery).
// Such a sync's error is not a hint: a later fsync through the same file
// may not report it again, so stop returns it.
type writeback struct {
	f         *os.File
	drop      bool  // also drop written-back pages from the page cache
	syncEvery int64 // direct bytes between fdatasyncs; 0: none
	written   atomic.Int64
	direct    atomic.Int64 // bytes written with direct I/O
	syncDue   atomic.Bool  // a fdatasync was asked for and not started yet
	syncs     atomic.Int64 // fdatasyncs done
	kick      chan struct{}
	wg        sync.WaitGroup

	mu     sync.Mutex
	lo, hi int64 // the byte range written since the last request
	err    error // the first fdatasync's error
}

// Each request covers only the range written since the one before. With
// drop, the pages of that range and of the one before it (written back
// since) are also dropped from the page cache (POSIX_FADV_DONTNEED drops
// only clean pages), so a restore of a large file keeps a small page-cache
// footprint and reuses the same memory instead of claiming gigabytes of
// fresh page cache, while the pages a user of a hydrating volume reads
// elsewhere in the file stay cached (dropping the whole file at each
// request cost hydration 0.86 CPU-s and the user its cached pages).
func startWriteback(f *os.File, drop bool, syncEvery int64) *writeback {
	w := &writeback{f: f, drop: drop, syncEvery: syncEvery, kick: make(chan struct{}, 1), lo: -1}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		fd := int(f.Fd())
		prevLo, prevHi := int64(-1), int64(-1)
		for range w.kick {
			if w.syncDue.Swap(false) {
				w.datasync(fd)
			}
			w.mu.Lock()
			lo, hi := w.lo, w.hi
			w.lo, w.hi = -1, -1
			w.mu.Unlock()
			if lo < 0 {
				continue
			}
			if drop {
				if prevLo >= 0 {
					_ = unix.Fadvise(fd, prevLo, prevHi-prevLo, unix.FADV_DONTNEED)
				}
				_ = unix.Fadvise(fd, lo, hi-lo, unix.FADV_DONTNEED)
			}
			// SYNC_FILE_RANGE_WRITE starts writeback of the range
			// without waiting for it.
			_ = unix.SyncFileRange(fd, lo, hi-lo, unix.SYNC_FILE_RANGE_WRITE)
			prevLo, prevHi = lo, hi
		}
	}()
	return w
}

// wrote records n bytes written through the page cache within the range
// [off, off+size) of the file, requesting writeback every writebackEvery
// bytes.
func (w *writeback) wrote(off int64, size, n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	if w.lo < 0 || off < w.lo {
		w.lo = off
	}
	w.hi = max(w.hi, off+int64(size))
	w.mu.Unlock()
	after := w.written.Add(int64(n))
	if after/writebackEvery != (after-int64(n))/writebackEvery {
		select {
		case w.kick <- struct{}{}:
		default: // one is pending already
		}
	}
}

// datasync fdatasyncs the file and keeps the first error.
func (w *writeback) datasync(fd int) {
	err := unix.Fdatasync(fd)
	for err == unix.EINTR {
		err = unix.Fdatasync(fd)
	}
	if err != nil {
		w.mu.Lock()
		if w.err == nil {
			w.err = &os.PathError{Op: "fdatasync", Path: w.f.Name(), Err: err}
		}
		w.mu.Unlock()
		return
	}
	w.syncs.Add(1)
}

// wroteDirect records n bytes written with direct I/O, asking for a
// fdatasync every syncEvery bytes (none when syncEvery is 0).
func (w *writeback) wroteDirect(n int) {
	if n <= 0 || w.syncEvery <= 0 {
		return
	}
	after := w.direct.Add(int64(n))
	if after/w.syncEvery != (after-int64(n))/w.syncEvery {
		w.syncDue.Store(true)
		select {
		case w.kick <- struct{}{}:
		default: // one is pending already
		}
	}
}

// stop ends the writeback goroutine and returns the error of a fdatasync
// it made, if one failed: the file's data may not be durable whatever a
// later fsync says.
func (w *writeback) stop() error {
	close(w.kick)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

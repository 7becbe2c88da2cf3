package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nextData returns the next data extent [data, hole) at or after off in f,
// or (size, size) when only a hole remains.
func nextData(f *os.File, off, size int64) (data, hole int64, err error) {
	data, err = unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size, size, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("seek data at %d: %w", off, err)
	}
	hole, err = unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, fmt.Errorf("seek hole at %d: %w", data, err)
	}
	return min(data, size), min(hole, size), nil
}

// walkExisting calls fn for root and everything under it, skipping what
// does not exist (root included) or vanishes during the walk.
func walkExisting(root string, fn func(p string, d fs.DirEntry) error) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			err = fn(p, d)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
}

// diskUsage is the space the files under path occupy on disk (st_blocks),
// like du.
func diskUsage(path string) (int64, error) {
	var total int64
	err := walkExisting(path, func(p string, d fs.DirEntry) error {
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("disk usage of %s: %w", path, err)
	}
	return total, nil
}

// diskUsageOf sums diskUsage over paths; missing paths count zero.
func diskUsageOf(paths ...string) (int64, error) {
	var total int64
	for _, p := range paths {
		n, err := diskUsage(p)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// evictCached drops the page-cache pages of every regular file under paths
// (POSIX_FADV_DONTNEED), so that the next read of them goes to the disk.
// Only clean pages are dropped: call it after a sync. Missing paths are
// skipped. Unlike dropCaches it needs no privilege and leaves every other
// file's pages alone.
func evictCached(paths ...string) error {
	for _, root := range paths {
		err := walkExisting(root, func(p string, d fs.DirEntry) error {
			if !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
				return fmt.Errorf("fadvise %s: %w", p, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("evict %s from the page cache: %w", root, err)
		}
	}
	return nil
}

// settleCached brings the files at paths to the page-cache state of a disk
// just written and synced: after a sync (every dirty page written back),
// the pages of their holes are dropped (POSIX_FADV_DONTNEED) and the pages
// of their data read in. Two servers' files settled alike before a timed
// run then differ in nothing that the runs before left in the page cache
// (coffer bench nbd: nbdkit's reads of the image's holes left 2 GiB of
// zero pages cached that Coffer's sparse reads never make, so nbdkit's 1 MiB
// writes after them overwrote cached pages where Coffer's allocated one
// page per 4 KiB, reclaiming others with the cache full; docs/design.md,
// "Session perf14ag").
func settleCached(ctx context.Context, paths ...string) error {
	unix.Sync()
	buf := make([]byte, 1<<20)
	for _, p := range paths {
		if err := settleFile(ctx, p, buf); err != nil {
			return fmt.Errorf("settle %s in the page cache: %w", p, err)
		}
	}
	return nil
}

// settleFile drops the cached pages of the holes of the file at path and
// reads its data through buf.
func settleFile(ctx context.Context, path string, buf []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, hole, err := nextData(f, off, size)
		if err != nil {
			return err
		}
		if data > off {
			if err := unix.Fadvise(int(f.Fd()), off, data-off, unix.FADV_DONTNEED); err != nil {
				return fmt.Errorf("fadvise: %w", err)
			}
		}
		for pos := data; pos < hole; {
			n := min(int64(len(buf)), hole-pos)
			if _, err := f.ReadAt(buf[:n], pos); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			pos += n
		}
		off = hole
	}
	return nil
}

// rssMeter measures this process's peak resident set size over windows
// (each timed step) and over the whole run. A window starts by resetting
// the kernel's high-water mark (VmHWM, by writing 5 to
// /proc/self/clear_refs), so the meter keeps the overall peak itself:
// every reading, and the mark before each reset, is folded into it.
type rssMeter struct {
	mu      sync.Mutex
	overall int64
}

// statusHWM returns the VmHWM line of a /proc/PID/status file in bytes.
func statusHWM(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err == nil {
				return kb << 10, true
			}
		}
	}
	return 0, false
}

// hwm returns this process's VmHWM in bytes, or its peak from getrusage
// where /proc is not readable.
func hwm() int64 {
	if v, ok := statusHWM("/proc/self/status"); ok {
		return v
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss << 10 // KiB on Linux
}

// start begins a window; where the mark cannot be reset, the window's
// peak is the peak so far.
func (m *rssMeter) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.overall = max(m.overall, hwm())
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5\n"), 0)
}

// peak returns the peak of the current window.
func (m *rssMeter) peak() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := hwm()
	m.overall = max(m.overall, v)
	return v
}

// overallPeak returns the peak of the whole run.
func (m *rssMeter) overallPeak() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.overall = max(m.overall, hwm())
	return m.overall
}

const dropCachesPath = "/proc/sys/vm/drop_caches"

// canDropCaches reports whether dropCaches can work (root, writable file).
func canDropCaches() error {
	f, err := os.OpenFile(dropCachesPath, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("cannot drop caches: %w", err)
	}
	return f.Close()
}

// dropCaches writes dirty pages back and drops the page, dentry and inode
// caches, so the next timed run starts cold.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile(dropCachesPath, []byte("3\n"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

// loadAverage returns the first three fields of /proc/loadavg ("" if
// unavailable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// processCPUOf returns the CPU time (user and system, all threads) process
// pid has used, from /proc/PID/stat, in clock ticks of 10 ms.
func processCPUOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// utime and stime are fields 14 and 15, the 12th and 13th after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("cpu time of process %d: malformed stat", pid)
	}
	var ticks int64
	for _, x := range f[11:13] {
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu time of process %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

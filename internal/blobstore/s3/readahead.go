package s3

import (
	"context"
	"fmt"
	"sync"
)

// Read-ahead of sequential ranged reads.
//
// A restore reads each pack's chunk runs in order, a run of a few MiB at
// a time, from several jobs at once. Each ranged GET costs the client and
// above all the server a fixed amount of CPU besides its bytes (versitygw
// on loopback: about 1.7 ms of server CPU per GET against 0.4 ms per MiB,
// BenchmarkReadRange), so reading a pack in 1 MiB GETs costs the server
// five times what 8 MiB GETs do. A ranged read that starts where an
// earlier read of the same object ended (within seqGap), and is smaller
// than the window, fetches a whole window from there with one GET; reads
// that fall inside a window, fetched or still arriving, are copied from
// it. Reads that are not sequential (a chunk here and there) are single
// GETs of their own bytes, as before, so random reads move no more bytes.
//
// Packs are immutable objects with unique names (never overwritten), so
// bytes read once stay right; a window lives only until readAheadWindows
// newer ones replace it.
const (
	// DefaultReadAhead is the window of Options.ReadAhead.
	DefaultReadAhead = 8 << 20
	// readAheadWindows is how many windows are kept (their memory,
	// reused, is readAheadWindows × the window at most, plus the windows
	// that readers still copy from).
	readAheadWindows = 4
	// seqGap is how far from where an earlier read of an object ended a
	// read may start and still count as sequential (chunkstore's batched
	// reads span gaps of up to 64 KiB too).
	seqGap = 64 << 10
	// recentReads is how many read ends are remembered, across objects.
	recentReads = 32
)

// window is one read-ahead GET: bytes [off, off+len(buf)) of name once
// done is closed (fewer than asked at the object's end), or err.
type window struct {
	name string
	off  int64
	want int64 // bytes asked for
	done chan struct{}
	buf  []byte
	err  error
	// Under readAhead.mu: readers (the fetcher included) still using buf,
	// and whether the window has left the list.
	refs    int
	evicted bool
}

type readEnd struct {
	name string
	end  int64
}

// readAhead serves sequential ranged reads from windows (see above).
type readAhead struct {
	size int64

	mu   sync.Mutex
	wins []*window // oldest first
	ends [recentReads]readEnd
	next int
	free [][]byte // buffers of evicted windows, for reuse
}

// read serves the read of n bytes at off of name from a window, fetched
// with fetch (a GET of up to size bytes at off into buf) if need be. ok
// is false when the read is not sequential, or its window failed or ends
// before it: the caller then reads it alone.
func (ra *readAhead) read(ctx context.Context, name string, off, n int64, buf []byte,
	fetch func(ctx context.Context, off, size int64, buf []byte) ([]byte, error)) (data []byte, ok bool, err error) {
	ra.mu.Lock()
	if w := ra.covering(name, off, n); w != nil {
		w.refs++
		ra.mu.Unlock()
		return ra.copyOut(ctx, w, off, n, buf)
	}
	seq := ra.sequential(name, off)
	ra.noteEnd(name, off+n)
	if !seq {
		ra.mu.Unlock()
		return nil, false, nil
	}
	w := &window{name: name, off: off, want: ra.size, done: make(chan struct{}), refs: 1}
	ra.insert(w)
	ra.noteEnd(name, off+ra.size)
	var mem []byte
	if k := len(ra.free); k > 0 {
		mem, ra.free = ra.free[k-1], ra.free[:k-1]
	}
	ra.mu.Unlock()

	if mem == nil {
		mem = make([]byte, ra.size)
	}
	w.buf, w.err = fetch(ctx, off, ra.size, mem)
	if w.err != nil {
		ra.mu.Lock()
		ra.remove(w)
		ra.mu.Unlock()
	}
	close(w.done)
	return ra.copyOut(ctx, w, off, n, buf)
}

// copyOut copies the read from w once it is done, and lets go of w.
func (ra *readAhead) copyOut(ctx context.Context, w *window, off, n int64, buf []byte) ([]byte, bool, error) {
	defer ra.release(w)
	select {
	case <-w.done:
	case <-ctx.Done():
		return nil, true, fmt.Errorf("get %s [%d,+%d]: %w", w.name, off, n, ctx.Err())
	}
	if w.err != nil || off+n > w.off+int64(len(w.buf)) {
		return nil, false, nil
	}
	b := buf
	if int64(cap(b)) < n {
		b = make([]byte, n)
	}
	b = b[:n:n]
	copy(b, w.buf[off-w.off:])
	return b, true, nil
}

// covering returns the window of name that holds [off, off+n) (as far as
// it was asked for), or nil.
func (ra *readAhead) covering(name string, off, n int64) *window {
	for i := len(ra.wins) - 1; i >= 0; i-- {
		w := ra.wins[i]
		if w.name == name && w.off <= off && off+n <= w.off+w.want {
			return w
		}
	}
	return nil
}

// sequential reports whether a read of name at off starts near where an
// earlier read of it ended.
func (ra *readAhead) sequential(name string, off int64) bool {
	for _, e := range ra.ends {
		if e.name == name && off >= e.end-seqGap && off <= e.end+seqGap {
			return true
		}
	}
	return false
}

func (ra *readAhead) noteEnd(name string, end int64) {
	ra.ends[ra.next] = readEnd{name, end}
	ra.next = (ra.next + 1) % recentReads
}

// insert adds w, evicting the oldest window if there are too many.
func (ra *readAhead) insert(w *window) {
	if len(ra.wins) >= readAheadWindows {
		ra.evict(ra.wins[0])
		ra.wins = ra.wins[1:]
	}
	ra.wins = append(ra.wins, w)
}

// remove takes w out of the list (a failed fetch).
func (ra *readAhead) remove(w *window) {
	for i, x := range ra.wins {
		if x == w {
			ra.wins = append(ra.wins[:i], ra.wins[i+1:]...)
			ra.evict(w)
			return
		}
	}
}

// evict marks w as out of the list; its memory is reused once no reader
// holds it.
func (ra *readAhead) evict(w *window) {
	w.evicted = true
	ra.recycle(w)
}

// release ends a reader's use of w.
func (ra *readAhead) release(w *window) {
	ra.mu.Lock()
	w.refs--
	ra.recycle(w)
	ra.mu.Unlock()
}

// recycle keeps the memory of an evicted window that nobody reads.
func (ra *readAhead) recycle(w *window) {
	if !w.evicted || w.refs > 0 || w.buf == nil {
		return
	}
	if len(ra.free) < readAheadWindows {
		ra.free = append(ra.free, w.buf[:cap(w.buf)])
	}
	w.buf = nil
}

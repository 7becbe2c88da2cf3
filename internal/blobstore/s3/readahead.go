package s3

import (
	"context"
	"fmt"
	"sync"
)

// Read-ahead of dense ranged reads.
//
// A restore reads each pack's chunk runs, a run of a few MiB at a time,
// from several jobs at once, each job a stretch of the pack. Each ranged
// GET costs the client and above all the server a fixed amount of CPU
// besides its bytes (versitygw on loopback: about 1.7 ms of server CPU per
// GET against 0.4 ms per MiB, BenchmarkReadRange), so reading a pack in
// 1 MiB GETs costs the server several times what 8 MiB GETs do.
//
// An object is read in aligned blocks of the window's size: a read of at
// least minAhead bytes within one block, made soon after another read of
// the object that ended less than a window away, fetches the whole block
// with one GET; reads that fall inside a block being fetched or fetched
// are copied from it. Other reads are single GETs of their own bytes, as
// before: small reads (a chunk here and there), the first read of an
// object, reads that cross a block's edge, and reads of a block that was
// fetched once and has been let go (so that no block is read twice).
//
// Packs are immutable objects with unique names (never overwritten), so
// bytes read once stay right; a block lives only until readAheadWindows
// newer ones replace it.
const (
	// DefaultReadAhead is the window of Options.ReadAhead.
	DefaultReadAhead = 8 << 20
	// readAheadWindows is how many blocks are kept (their memory,
	// reused, is readAheadWindows windows at most, plus the blocks that
	// readers still copy from).
	readAheadWindows = 4
	// minAhead is the smallest read that fetches a block: chunkstore's
	// batched reads of chunk runs, not single chunks.
	minAhead = 256 << 10
	// recentReads is how many read ends are remembered, across objects.
	recentReads = 64
	// recentBlocks is how many fetched blocks are remembered: a block
	// let go lately is not fetched again (its last readers were slow),
	// one let go long ago may be (the object is read again).
	recentBlocks = 2 * readAheadWindows
)

// window is one block's GET: bytes [off, off+len(buf)) of name once done
// is closed (fewer than asked at the object's end), or err.
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

// readAhead serves dense ranged reads from blocks (see above).
type readAhead struct {
	size int64

	mu          sync.Mutex
	wins        []*window // oldest first
	ends        [recentReads]readEnd
	next        int
	fetched     [recentBlocks]readEnd // blocks fetched: name and offset
	nextFetched int
	free        [][]byte // buffers of evicted windows, for reuse
}

// read serves the read of n bytes at off of name from a block, fetched
// with fetch (a GET of up to size bytes at off into buf) if need be. ok
// is false when the read is not for a block, or its block failed or ends
// before it: the caller then reads it alone.
func (ra *readAhead) read(ctx context.Context, name string, off, n int64, buf []byte,
	fetch func(ctx context.Context, off, size int64, buf []byte) ([]byte, error)) (data []byte, ok bool, err error) {
	bo := off - off%ra.size // the block's offset
	ra.mu.Lock()
	if off+n > bo+ra.size { // across a block's edge
		ra.noteEnd(name, off+n)
		ra.mu.Unlock()
		return nil, false, nil
	}
	if w := ra.block(name, bo); w != nil {
		w.refs++
		ra.mu.Unlock()
		return ra.copyOut(ctx, w, off, n, buf)
	}
	dense := n >= minAhead && ra.near(name, off) && !ra.wasFetched(name, bo)
	ra.noteEnd(name, off+n)
	if !dense {
		ra.mu.Unlock()
		return nil, false, nil
	}
	w := &window{name: name, off: bo, want: ra.size, done: make(chan struct{}), refs: 1}
	ra.insert(w)
	ra.fetched[ra.nextFetched] = readEnd{name, bo}
	ra.nextFetched = (ra.nextFetched + 1) % recentBlocks
	var mem []byte
	if k := len(ra.free); k > 0 {
		mem, ra.free = ra.free[k-1], ra.free[:k-1]
	}
	ra.mu.Unlock()

	if mem == nil {
		mem = make([]byte, ra.size)
	}
	w.buf, w.err = fetch(ctx, bo, ra.size, mem)
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

// block returns the block of name at offset bo, or nil.
func (ra *readAhead) block(name string, bo int64) *window {
	for _, w := range ra.wins {
		if w.name == name && w.off == bo {
			return w
		}
	}
	return nil
}

// near reports whether a recent read of name ended less than a window
// away from off.
func (ra *readAhead) near(name string, off int64) bool {
	for _, e := range ra.ends {
		if e.name == name && off > e.end-ra.size && off < e.end+ra.size {
			return true
		}
	}
	return false
}

// wasFetched reports whether the block of name at bo was fetched lately.
func (ra *readAhead) wasFetched(name string, bo int64) bool {
	for _, f := range ra.fetched {
		if f.name == name && f.end == bo {
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

package blockdev

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"coffer/internal/directio"
)

// The memory of restores and hydration (docs/design.md, "Restore memory").
const (
	// restoreIODepth is how many restore and hydration jobs run at once
	// beyond one per engine worker, engine-wide. A job alternates between
	// reading packs and writing blocks, which wait on the disk, and
	// decompressing, which needs a core; the extra jobs keep the disk's
	// queue full while the cores decompress. It is a property of the
	// storage more than of the cores: measured on the development VM (2
	// cores, virtio disk), a 4 GiB full restore took 2.4-2.7 s with 4 jobs
	// at once and 2.1-2.3 s with 8, with no gain beyond, and hydration of
	// the same image 3.0-3.5 s with 2 and 2.5 s with 8.
	restoreIODepth = 6
	// restoreBufBytes bounds the blocks of one restore job: a span of an
	// index page of at most this many bytes (a whole page at block sizes
	// up to restoreBufBytes/EntriesPerPage), and at least one block.
	restoreBufBytes = 8 << 20
	// restoreReadBytes is a job's read buffer: the job reads its next
	// runs of packs into it while it decompresses an earlier one
	// (chunkstore.Store.GetManyInto), each run at most half of it (2
	// MiB), so that a run is always read while another is decoded.
	restoreReadBytes = 4 << 20
	// restoreReadAhead is how many runs of packs a restore job reads
	// while it decodes an earlier one, within its read buffer. Where
	// several disks were backed up at once their chunks lie interleaved
	// in shared packs, a job's runs are short, and a read's time is
	// mostly its latency: with one run ahead, four restores at once kept
	// their jobs waiting for the disk read after read (docs/design.md,
	// "Issue 14's figures (session 8)").
	restoreReadAhead = 7
	// hydrateReadAhead is the same for hydration, which keeps one run
	// ahead: it runs beside the volume's user, whose reads would queue
	// behind deeper read-ahead.
	hydrateReadAhead = 1
)

// ioBuf is the memory of one restore or hydration job: span holds the
// blocks it restores (restoreBufBytes, at least the largest block size),
// read its ranged reads of packs (for GetManyInto, which reads runs into
// it while the job decodes earlier ones). Both are aligned for direct
// I/O.
type ioBuf struct {
	mem, span, read []byte
}

// ioBufs are an engine's restore and hydration job buffers, shared by
// every restore (RestoreTo, RestoreToFile) and hydration running at once:
// at most Workers+restoreIODepth jobs hold one at a time, so that four
// restores at once take the memory and the I/O depth of one and share the
// disk's throughput instead of queueing four times as deep on it; which
// waiting job gets a buffer that comes free is getIOBuf's rule (the
// oldest user first, after any user that holds none). The buffers are
// mapped outside the Go heap (directio.MapHuge) while the engine has a
// restore or hydration running, and unmapped when the last one ends, so
// an idle engine holds none. The zero value is ready.
type ioBufs struct {
	mu      sync.Mutex
	users   int
	free    []*ioBuf
	mapped  int // buffers in existence
	held    int // buffers held by jobs (at most limit)
	seq     uint64
	waiters []*ioWaiter // in arrival order
}

// ioUser is one user of the engine's job buffers (openIOBufs): a restore
// or a hydration run. Its seq orders the users by age; held is how many
// buffers its jobs hold (guarded by ioBufs.mu).
type ioUser struct {
	seq  uint64
	held int
}

// ioWaiter is a job waiting for a buffer; ready is closed once one is
// granted to it (granted, under ioBufs.mu).
type ioWaiter struct {
	u       *ioUser
	ready   chan struct{}
	granted bool
}

// openIOBufs registers a user of the engine's job buffers (a restore or a
// hydration run); the returned function ends the use, after which the
// user's jobs hold no buffer.
func (e *Engine) openIOBufs() (*ioUser, func()) {
	p := &e.iobufs
	p.mu.Lock()
	p.users++
	p.seq++
	u := &ioUser{seq: p.seq}
	p.mu.Unlock()
	return u, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.users--; p.users == 0 {
			for _, b := range p.free {
				_ = directio.Unmap(b.mem) // fails only for memory not from Map
			}
			p.mapped -= len(p.free)
			p.free = nil
		}
	}
}

// getIOBuf waits until fewer than Workers+restoreIODepth jobs hold a
// buffer and returns one; putIOBuf gives it back. The caller holds the
// buffers open (openIOBufs) as u. When jobs wait, a buffer that comes
// free goes first to a job of a user that holds none (the oldest such
// user), else to a job of the oldest user: several restores at once then
// each keep going, but the one that started first gets the rest and ends
// first, so that their ends (each with its fsync) and the next ones'
// starts come one at a time instead of all together.
func (e *Engine) getIOBuf(ctx context.Context, u *ioUser) (*ioBuf, error) {
	p := &e.iobufs
	limit := e.opts.Workers + restoreIODepth
	p.mu.Lock()
	if p.held < limit && len(p.waiters) == 0 {
		p.held++
		u.held++
	} else {
		w := &ioWaiter{u: u, ready: make(chan struct{})}
		p.waiters = append(p.waiters, w)
		p.mu.Unlock()
		select {
		case <-w.ready:
		case <-ctx.Done():
			p.mu.Lock()
			if w.granted {
				p.releaseLocked(u)
			} else {
				p.waiters = slices.DeleteFunc(p.waiters, func(x *ioWaiter) bool { return x == w })
			}
			p.mu.Unlock()
			return nil, ctx.Err()
		}
		p.mu.Lock()
	}
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b, nil
	}
	p.mu.Unlock()
	span := max(int64(restoreBufBytes), e.bs)
	// Huge pages where the kernel grants them: a restore touches every
	// byte of each freshly mapped buffer, and on 4 KiB pages the faults
	// cost about 3.5 ms of CPU per MiB on the development VM (perf14k,
	// docs/design.md), a third of a CPU-second per restore.
	mem, err := directio.MapHuge(int(span) + restoreReadBytes + 2*directio.Align)
	if err != nil {
		p.mu.Lock()
		p.releaseLocked(u)
		p.mu.Unlock()
		return nil, fmt.Errorf("restore buffer: %w", err)
	}
	p.mu.Lock()
	p.mapped++
	p.mu.Unlock()
	return &ioBuf{mem: mem, span: mem[:span:span], read: mem[span:]}, nil
}

// putIOBuf gives back a buffer that u's job held.
func (e *Engine) putIOBuf(u *ioUser, b *ioBuf) {
	p := &e.iobufs
	p.mu.Lock()
	p.free = append(p.free, b)
	p.releaseLocked(u)
	p.mu.Unlock()
}

// releaseLocked ends u's hold of a buffer and grants it to the next
// waiting job, if any (see getIOBuf); p.mu is held.
func (p *ioBufs) releaseLocked(u *ioUser) {
	p.held--
	u.held--
	if len(p.waiters) == 0 {
		return
	}
	best := 0
	for i, w := range p.waiters {
		b := p.waiters[best]
		switch {
		case (w.u.held == 0) != (b.u.held == 0):
			if w.u.held == 0 {
				best = i
			}
		case w.u.seq < b.u.seq:
			best = i
		}
	}
	w := p.waiters[best]
	p.waiters = slices.Delete(p.waiters, best, best+1)
	w.granted = true
	p.held++
	w.u.held++
	close(w.ready)
}

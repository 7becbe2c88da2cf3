package blockdev

import (
	"context"
	"fmt"
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
// disk's throughput instead of queueing four times as deep on it. The
// buffers are mapped outside the Go heap (directio.MapHuge) while the engine
// has a restore or hydration running, and unmapped when the last one ends,
// so an idle engine holds none. The zero value is ready; the engine sizes
// it on first use.
type ioBufs struct {
	once   sync.Once
	tokens chan struct{} // one per job that holds a buffer

	mu     sync.Mutex
	users  int
	free   []*ioBuf
	mapped int // buffers in existence
}

// openIOBufs registers a user of the engine's job buffers (a restore or a
// hydration run); the returned function ends the use, after which the
// user's jobs hold no buffer.
func (e *Engine) openIOBufs() (release func()) {
	p := &e.iobufs
	p.once.Do(func() { p.tokens = make(chan struct{}, e.opts.Workers+restoreIODepth) })
	p.mu.Lock()
	p.users++
	p.mu.Unlock()
	return func() {
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
// buffers open (openIOBufs).
func (e *Engine) getIOBuf(ctx context.Context) (*ioBuf, error) {
	p := &e.iobufs
	select {
	case p.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
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
		<-p.tokens
		return nil, fmt.Errorf("restore buffer: %w", err)
	}
	p.mu.Lock()
	p.mapped++
	p.mu.Unlock()
	return &ioBuf{mem: mem, span: mem[:span:span], read: mem[span:]}, nil
}

func (e *Engine) putIOBuf(b *ioBuf) {
	p := &e.iobufs
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
	<-p.tokens
}

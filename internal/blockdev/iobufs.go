package blockdev

import (
	"context"
	"fmt"
	"sync"

	"coffer/internal/directio"
)

// The memory of restores and hydration (docs/design.md, "Restore memory").
const (
	// restoreIODepth is how many restore and hydration jobs read at once
	// beyond one per engine worker, engine-wide (and how many restore
	// jobs hold a span at once). A job alternates between reading packs
	// and writing blocks, which wait on the disk, and decompressing, which
	// needs a core; the extra jobs keep the disk's queue full while the
	// cores decompress. It is a property of the storage more than of the
	// cores: measured on the development VM (2 cores, virtio disk), a 4
	// GiB full restore took 2.4-2.7 s with 4 jobs at once and 2.1-2.3 s
	// with 8, with no gain beyond, and hydration of the same image 3.0-3.5
	// s with 2 and 2.5 s with 8.
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

// ioBufs are an engine's restore and hydration job buffers, shared by
// every restore (RestoreTo, RestoreToFile) and hydration running at once,
// in two pools of Workers+restoreIODepth buffers each:
//
//   - read buffers (restoreReadBytes): a job's ranged reads of packs
//     (GetManyInto reads runs into one while the job decodes earlier
//     ones). Restore and hydration jobs hold one from their chunks'
//     lookup until their last chunk is decoded.
//   - spans (restoreBufBytes, at least the largest block size): the
//     blocks one restore job decodes and then writes. A restore job takes
//     one when its first chunk is ready to decode, and holds it until its
//     writes end; hydration needs none (it writes block by block).
//
// So a restore job holds its span neither while it waits for its lookup
// and its first read, nor its read buffer while it writes: a job that
// writes leaves its read buffer to a job that reads. Four restores at once
// take the memory and the I/O depth of one and share the disk's
// throughput instead of queueing four times as deep on it. A job always
// takes its read buffer before its span and gives the read buffer back
// first, so a job waiting for a span holds a read buffer while every
// span's holder needs nothing more to finish: no job waits on another in
// a cycle. The buffers are aligned for direct I/O and mapped outside the
// Go heap (directio.MapHuge) while the engine has a restore or hydration
// running, and unmapped when the last one ends, so an idle engine holds
// none. The zero value is ready; the engine sizes it on first use.
type ioBufs struct {
	once         sync.Once
	reads, spans bufPool

	mu    sync.Mutex
	users int
}

// bufPool is one of ioBufs' pools: at most cap(tokens) buffers of size
// bytes are held at a time.
type bufPool struct {
	tokens chan struct{} // one per buffer held
	size   int
	what   string // in get's errors

	mu     sync.Mutex
	free   [][]byte
	mapped int // buffers in existence
}

// get waits until fewer than cap(tokens) buffers are held and returns
// one, mapping it if none is free.
func (p *bufPool) get(ctx context.Context) ([]byte, error) {
	select {
	case p.tokens <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", p.what, ctx.Err())
	}
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b, nil
	}
	p.mu.Unlock()
	// Huge pages where the kernel grants them: a restore touches every
	// byte of each freshly mapped buffer, and on 4 KiB pages the faults
	// cost about 3.5 ms of CPU per MiB on the development VM (perf14k,
	// docs/design.md), a third of a CPU-second per restore.
	b, err := directio.MapHuge(p.size)
	if err != nil {
		<-p.tokens
		return nil, fmt.Errorf("%s: %w", p.what, err)
	}
	p.mu.Lock()
	p.mapped++
	p.mu.Unlock()
	return b[:p.size:p.size], nil
}

// put gives back a buffer from get.
func (p *bufPool) put(b []byte) {
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
	<-p.tokens
}

// unmapFree unmaps the free buffers.
func (p *bufPool) unmapFree() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.free {
		_ = directio.Unmap(b) // fails only for memory not from Map
	}
	p.mapped -= len(p.free)
	p.free = nil
}

// held returns how many buffers are held and how many are mapped.
func (p *bufPool) held() (held, mapped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tokens), p.mapped
}

// openIOBufs registers a user of the engine's job buffers (a restore or a
// hydration run); the returned function ends the use, after which the
// user's jobs hold no buffer.
func (e *Engine) openIOBufs() (release func()) {
	p := &e.iobufs
	p.once.Do(func() {
		n := e.opts.Workers + restoreIODepth
		p.reads = bufPool{tokens: make(chan struct{}, n), size: restoreReadBytes + 2*directio.Align, what: "restore read buffer"}
		p.spans = bufPool{tokens: make(chan struct{}, n), size: int(e.spanBytes()), what: "restore buffer"}
	})
	p.mu.Lock()
	p.users++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.users--; p.users == 0 {
			p.reads.unmapFree()
			p.spans.unmapFree()
		}
	}
}

// getReadBuf waits until fewer than Workers+restoreIODepth jobs hold a
// read buffer and returns one; putReadBuf gives it back. A job that will
// also take a span takes its read buffer first. The caller holds the
// buffers open (openIOBufs).
func (e *Engine) getReadBuf(ctx context.Context) ([]byte, error) { return e.iobufs.reads.get(ctx) }

func (e *Engine) putReadBuf(b []byte) { e.iobufs.reads.put(b) }

// spanBytes is the size of a span: restoreBufBytes, or one block if
// larger.
func (e *Engine) spanBytes() int64 { return max(int64(restoreBufBytes), e.bs) }

// getSpanBuf waits until fewer than Workers+restoreIODepth jobs hold a
// span and returns one (spanBytes);
// putSpanBuf gives it back. The caller holds its read buffer, if it has
// one, and the buffers open.
func (e *Engine) getSpanBuf(ctx context.Context) ([]byte, error) { return e.iobufs.spans.get(ctx) }

func (e *Engine) putSpanBuf(b []byte) { e.iobufs.spans.put(b) }

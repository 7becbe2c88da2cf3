package nbd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/semaphore"

	"coffer/internal/lowprio"
)

// maxExtents bounds the descriptors in one BLOCK_STATUS reply; the client
// asks again for the rest.
const maxExtents = 1 << 16

// holeGrain is the granularity at which a structured READ reply finds
// all-zero parts of the data: aligned runs of whole 4 KiB pages (of the
// export) that read as zeroes.
const holeGrain = 4 << 10

// minHole is the shortest run of zeroes that a structured READ reply
// sends as an OFFSET_HOLE chunk, unless the zeroes are the whole reply; a
// shorter run between data goes out as data, merged with it. Each chunk
// costs a client such as libnbd three or four recv calls (it reads each
// header exactly), so a 1 MiB reply of a region where scattered 4 KiB
// pages were written, cut into a hundred chunks, cost the client more
// than the bytes it saved (docs/design.md, perf14q). Whole blocks never
// written are holes of the volume's map, 64 KiB or more.
const minHole = 64 << 10

// maxInline is the largest READ that the connection's reader serves with
// the Inliner's TryReadAt: copying and scanning a larger one for zero
// pages there would keep the connection's other requests waiting. A
// larger READ is tried on a plain connection's reader thread only with a
// SparseReader, whose holes cost no copy and no scan, and a WRITE of any
// size, whose payload is in memory already: handing a 1 MiB request to a
// goroutine cost 3.7-6.1 context switches, 1.5-2.1 futex and 1.6-2.7
// nanosleep calls (the runtime's sysmon) per request, against 2.1-2.2,
// 0.3 and 1.0 on the reader thread (docs/design.md, perf14i).
const maxInline = 64 << 10

// readerYield is how often a plain connection's reader thread, which
// otherwise only makes system calls and never passes through the Go
// scheduler, yields (runtime.Gosched): the runtime's monitor (sysmon)
// takes a goroutine that ran 10 ms without passing through the scheduler
// for one that hogs its P, takes that P whenever it is in a system call,
// and, having taken one, polls again every 20 µs instead of backing off
// to 10 ms; with four connections its wake-ups were 9-14% of the
// server's CPU samples (docs/design.md, "Session perf14ad").
const readerYield = 5 * time.Millisecond

// zeroes is a shared all-zero buffer; it is only ever read.
var zeroes = make([]byte, 1<<20)

func (c *conn) transmit(ctx context.Context, exp *Export) {
	c.slots = make(chan struct{}, c.srv.maxInFlight())
	c.budget = semaphore.NewWeighted(c.srv.maxBuffered())
	var pr payloadReader
	if c.sock != nil {
		// Blocking system calls on a thread of its own (socket.go),
		// with a P of its own while other connections' threads are in
		// theirs too: else the runtime takes Ps from threads in system
		// calls and hands them over (lowprio.SyscallThreadP).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer lowprio.SyscallThreadP()()
		c.srv.readers.Add(1)
		defer c.srv.readers.Add(-1)
		c.br = bufio.NewReaderSize(c.sock, 64<<10)
		pr = payloadReader{sock: c.sock}
	} else {
		c.br = bufio.NewReaderSize(c.rw, 64<<10)
		pr = newPayloadReader(c.rw)
	}
	defer c.inflight.Wait()

	inl, _ := exp.Backend.(Inliner)
	sr, _ := exp.Backend.(SparseReader)
	var yielded time.Time
	for {
		req, payload, hold, ok := c.next(ctx, &pr)
		if !ok {
			return
		}
		start := c.srv.clock().Now()
		if c.sock != nil && start.Sub(yielded) >= readerYield {
			runtime.Gosched()
			yielded = start
		}
		if req.typ == cmdRead && req.length > maxInline && c.sock != nil {
			// This READ's reply may wait for the client to make room:
			// a BLOCK_STATUS behind it goes first.
			c.blockStatusAhead(ctx)
		}
		if (inl != nil || sr != nil) && c.tryInline(inl, sr, req, payload, hold) {
			c.srv.Metrics.request(req, c.srv.clock().Now().Sub(start))
			continue
		}
		if req.typ == cmdRead || req.typ == cmdWrite {
			c.srv.Metrics.handOff(req)
		}
		c.inflight.Add(1)
		go func() {
			defer c.inflight.Done()
			c.serveRequest(req, payload, hold, start)
		}()
	}
}

// next reads the next request and, for a WRITE, its payload (a pooled
// buffer the request owns). The request holds a slot and its bytes of
// the budget (hold) until its reply is written. Requests refused for
// their size are answered here and skipped. It reports !ok when the
// connection is to end: the client disconnected or broke the protocol,
// the read failed, or ctx ended.
func (c *conn) next(ctx context.Context, pr *payloadReader) (req request, payload []byte, hold *holding, ok bool) {
	maxReq := uint32(c.srv.maxRequest())
	var hdr [requestSize]byte
	for {
		var req request
		if len(c.ahead) > 0 {
			// READs taken out of the stream by blockStatusAhead.
			req, c.ahead = c.ahead[0], c.ahead[1:]
		} else {
			if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					c.log.Debug("nbd connection read ended", "err", err)
				}
				return request{}, nil, nil, false
			}
			var err error
			if req, err = decodeRequest(hdr[:]); err != nil {
				// Without a valid header the stream cannot be resynchronised.
				c.log.Info("nbd protocol violation, disconnecting", "err", err)
				return request{}, nil, nil, false
			}
			if req.typ == cmdDisc {
				return request{}, nil, nil, false
			}
		}
		weight := int64(0)
		if req.typ == cmdRead || req.typ == cmdWrite {
			if req.length > maxReq {
				if req.typ == cmdWrite {
					// Skip the payload without buffering it.
					if _, err := io.CopyN(io.Discard, c.br, int64(req.length)); err != nil {
						return request{}, nil, nil, false
					}
				}
				c.replyErr(req, errnoOverflow, fmt.Sprintf("request length %d exceeds maximum %d", req.length, maxReq), nil)
				continue
			}
			weight = int64(req.length)
		}
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return request{}, nil, nil, false
		}
		if err := c.budget.Acquire(ctx, weight); err != nil {
			<-c.slots
			return request{}, nil, nil, false
		}
		hold := &holding{weight: weight}
		if req.typ == cmdWrite {
			payload = getBuf(int(req.length))
			if err := pr.read(c, payload); err != nil {
				c.log.Debug("nbd connection read ended", "err", err)
				putBuf(payload)
				c.release(hold)
				return request{}, nil, nil, false
			}
		}
		return req, payload, hold, true
	}
}

// blockStatusAhead serves, before the READs received ahead of it, a
// BLOCK_STATUS that follows nothing but READs in what the connection has
// received and buffered (no system call): those READs are
// taken out of the stream, in order, for next to return, and the
// BLOCK_STATUS is answered at once. NBD lets a server reply in any
// order, and nothing between changes the export. A client that waits for
// BLOCK_STATUS with READs in flight, as nbdcopy does before each part of
// the disk, then gets its answer before those READs' replies, as from
// nbdkit's threads; answered in order, every READ in flight completed
// first, and nbdcopy's allocator gave back the freed buffers and faulted
// them in again: 1.5-1.7x the page faults and 1.35x nbdcopy's CPU
// (docs/design.md, perf14ac).
func (c *conn) blockStatusAhead(ctx context.Context) {
	if len(c.ahead) > 0 {
		return // the READs before the last one found still wait
	}
	// Only what is buffered: a recv here to look for more cost a system
	// call per large READ (mostly EAGAIN: fio's QD8 reads) and found
	// little, since the reader's recv takes all that has arrived.
	buf, _ := c.br.Peek(c.br.Buffered())
	maxReq := uint32(c.srv.maxRequest())
	var reads []request
	for i := 0; i+requestSize <= len(buf); i += requestSize {
		req, err := decodeRequest(buf[i : i+requestSize])
		switch {
		case err != nil:
			return // next reports it in its turn
		case req.typ == cmdRead && req.length <= maxReq:
			reads = append(reads, req)
			continue
		case req.typ != cmdBlockStatus:
			return
		}
		// Take the READs and the BLOCK_STATUS out of the stream.
		if _, err := c.br.Discard(i + requestSize); err != nil {
			return // cannot happen: the bytes are buffered
		}
		c.ahead = reads
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		start := c.srv.clock().Now()
		c.handle(req, nil, &holding{})
		c.srv.Metrics.request(req, c.srv.clock().Now().Sub(start))
		return
	}
}

// serveRequest runs one request read at start and replies to it. A
// panic in the backend closes the connection (the client cannot tell
// which request it lost) and releases what the request held.
func (c *conn) serveRequest(req request, payload []byte, hold *holding, start time.Time) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("nbd request panicked", "panic", fmt.Sprint(r), "cmd", req.typ)
			c.abort()
			c.release(hold) // no reply will carry it
		}
	}()
	c.handle(req, payload, hold)
	c.srv.Metrics.request(req, c.srv.clock().Now().Sub(start))
}

// holding is what a request holds until its reply is written: a slot and
// some of the connection's byte budget. It is released once.
type holding struct {
	weight int64
	done   atomic.Bool
}

func (c *conn) release(h *holding) {
	if h == nil || !h.done.CompareAndSwap(false, true) {
		return
	}
	c.budget.Release(h.weight)
	<-c.slots
}

// handle executes one request and queues its reply. payload is the WRITE
// data (owned by handle); hold is released with the reply.
func (c *conn) handle(req request, payload []byte, hold *holding) {
	if payload != nil {
		defer putBuf(payload)
	}
	errno, msg := c.check(req)
	if errno != 0 {
		c.replyErr(req, errno, msg, hold)
		return
	}
	b := c.exp.Backend
	off, n := int64(req.offset), int64(req.length)
	var err error
	switch req.typ {
	case cmdRead:
		c.read(req, hold)
		return
	case cmdBlockStatus:
		c.blockStatus(req, hold)
		return
	case cmdWrite:
		_, err = b.(Writer).WriteAt(payload, off)
	case cmdFlush:
		err = flush(b)
	case cmdTrim:
		if n > 0 {
			err = b.(Trimmer).Trim(off, n)
		}
	case cmdWriteZeroes:
		z, ok := b.(Zeroer)
		switch {
		case ok && req.flags&cmdFlagNoHole == 0:
			err = z.WriteZeroes(off, n)
		case req.flags&cmdFlagFastZero != 0:
			// Writing zero buffers is no faster than the client's own
			// write: fail at once, changing nothing.
			c.replyErr(req, errnoNotSup, "zeroing without a hole is not faster than writing", hold)
			return
		default:
			err = writeZeroBuffers(b.(Writer), off, n)
		}
	}
	if err == nil && req.flags&cmdFlagFUA != 0 && req.typ != cmdFlush {
		err = flush(b)
	}
	c.replyDone(req, err, hold)
}

// tryInline serves a READ, or a WRITE without FUA, on the connection's
// reader (thread or goroutine) when the backend can do it without
// waiting, which saves the hand-off to a request goroutine (and the
// wake-up of another thread) per request. It reports whether it did and replied; if not,
// nothing was done and payload is still the caller's.
func (c *conn) tryInline(inl Inliner, sr SparseReader, req request, payload []byte, hold *holding) bool {
	if req.typ != cmdRead && (req.typ != cmdWrite || req.flags&cmdFlagFUA != 0) {
		return false
	}
	large := req.typ == cmdRead && req.length > maxInline
	if large && (sr == nil || c.sock == nil) || !large && inl == nil {
		return false
	}
	if errno, _ := c.check(req); errno != 0 {
		return false // refused on the usual path
	}
	off := int64(req.offset)
	if large {
		buf := getBuf(int(req.length))
		var holes []span
		n, ok, err := sr.TryReadSparse(buf, off, holesInto(&holes, off))
		if !ok {
			putBuf(buf)
			return false
		}
		// With another request here already, the reply is written
		// behind the reader, which serves that request meanwhile;
		// only on the one connection transmitting: other connections'
		// threads overlap this one's copies already, and the hand-offs
		// cost CPU (docs/design.md, "Session perf14al").
		behind := (c.br.Buffered() > 0 || len(c.ahead) > 0) && c.srv.readers.Load() == 1
		c.replySparse(req, buf, n, holes, err, hold, behind)
		return true
	}
	if req.typ == cmdWrite {
		ok, err := inl.TryWriteAt(payload, off)
		if ok {
			putBuf(payload)
			c.replyDone(req, err, hold)
		}
		return ok
	}
	buf := getBuf(int(req.length))
	n, ok, err := inl.TryReadAt(buf, off)
	if !ok {
		putBuf(buf)
		return false
	}
	c.replyRead(req, buf, n, err, hold)
	return true
}

// replyDone queues the reply to a request without data: success, or the
// backend's error.
func (c *conn) replyDone(req request, err error, hold *holding) {
	if err != nil {
		c.log.Warn("nbd backend error", "cmd", req.typ, "offset", req.offset, "length", req.length, "err", err)
		c.replyErr(req, errnoFor(err), "backend error", hold)
		return
	}
	r := c.newReply(hold, 16)
	putSimpleHeader(r.hdr, req.handle, 0)
	c.send(r)
}

// check validates a request against the negotiated flags and the export;
// it returns a non-zero errno to refuse it.
func (c *conn) check(req request) (uint32, string) {
	allowed := uint16(0)
	if c.flags&flagSendFUA != 0 {
		allowed |= cmdFlagFUA
	}
	var inBounds uint32 = errnoInval
	write := false
	switch req.typ {
	case cmdRead:
		if c.structured {
			allowed |= cmdFlagDF
		}
	case cmdWrite:
		write, inBounds = true, errnoNoSpc
	case cmdFlush:
		if req.offset != 0 || req.length != 0 {
			return errnoInval, "flush with non-zero offset or length"
		}
	case cmdTrim:
		write = true
	case cmdWriteZeroes:
		write, inBounds = true, errnoNoSpc
		allowed |= cmdFlagNoHole
		if c.flags&flagSendFastZero != 0 {
			allowed |= cmdFlagFastZero
		}
	case cmdBlockStatus:
		allowed |= cmdFlagReqOne
		if !c.structured || !c.metaBase {
			return errnoInval, "no metadata context negotiated"
		}
		if req.length == 0 {
			return errnoInval, "zero-length block status"
		}
	default:
		return errnoInval, fmt.Sprintf("unknown command %d", req.typ)
	}
	if req.flags&^allowed != 0 {
		return errnoInval, fmt.Sprintf("flags %#x not valid for command %d", req.flags, req.typ)
	}
	if write {
		if c.flags&flagReadOnly != 0 {
			return errnoPerm, "export is read-only"
		}
		if req.typ == cmdTrim && c.flags&flagSendTrim == 0 {
			return errnoInval, "trim not supported"
		}
	}
	if req.offset > uint64(c.size) || uint64(req.length) > uint64(c.size)-req.offset {
		return inBounds, "request beyond the end of the export"
	}
	return 0, ""
}

func (c *conn) read(req request, hold *holding) {
	buf := getBuf(int(req.length))
	if sr, ok := c.exp.Backend.(SparseReader); ok {
		var holes []span
		n, err := sr.ReadSparse(buf, int64(req.offset), holesInto(&holes, int64(req.offset)))
		c.replySparse(req, buf, n, holes, err, hold, false)
		return
	}
	n, err := c.exp.Backend.ReadAt(buf, int64(req.offset))
	c.replyRead(req, buf, n, err, hold)
}

// holesInto returns a SparseReader's hole callback for a READ at off that
// appends each hole to *holes as a zero span of the reply's buffer.
func holesInto(holes *[]span, off int64) func(o, n int64) {
	return func(o, n int64) { *holes = append(*holes, span{int(o - off), int(n), true}) }
}

// replyRead queues the reply to a READ whose n bytes (or error) the
// backend returned into buf, a pooled buffer the reply takes over.
func (c *conn) replyRead(req request, buf []byte, n int, err error, hold *holding) {
	c.replySparse(req, buf, n, nil, err, hold, false)
}

// replySparse is replyRead for a buffer whose holes (in order) the backend
// left unfilled: they read as zeroes. With behind, a reply with data is
// written behind the caller (sendBehind).
func (c *conn) replySparse(req request, buf []byte, n int, holes []span, err error, hold *holding, behind bool) {
	if errors.Is(err, io.EOF) && n == len(buf) {
		err = nil
	}
	if err == nil && n != len(buf) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		putBuf(buf)
		c.log.Warn("nbd backend read error", "offset", req.offset, "length", req.length, "err", err)
		c.replyErr(req, errnoFor(err), "read failed", hold)
		return
	}
	if !c.structured || req.flags&cmdFlagDF != 0 && len(holes) > 0 {
		// The holes go out as data (or, with DF, as one chunk).
		for _, h := range holes {
			clear(buf[h.off : h.off+h.n])
		}
		holes = nil
	}
	if !c.structured {
		r := c.newReply(hold, 16)
		putSimpleHeader(r.hdr, req.handle, 0)
		r.iov = append(r.iov, r.hdr, buf)
		r.data = buf
		c.send(r)
		return
	}
	if len(buf) == 0 {
		putBuf(buf)
		r := c.newReply(hold, 20)
		putChunkHeader(r.hdr, req.handle, replyFlagDone, replyTypeNone, 0)
		c.send(r)
		return
	}
	// Content chunks: runs of data and, unless the client asked for one
	// chunk (DF), runs of whole zero pages as holes. With DF an all-zero
	// read is still one hole.
	var runs []span
	if req.flags&cmdFlagDF != 0 {
		runs = []span{{0, len(buf), allZero(buf)}}
	} else {
		runs = coarsen(readRuns(buf, req.offset, holes), buf)
	}
	c.srv.Metrics.readChunks(len(runs))
	r := c.newReply(hold, chunkHeadersLen(runs))
	r.data = buf
	h := r.hdr
	for i, s := range runs {
		flags := uint16(0)
		if i == len(runs)-1 {
			flags = replyFlagDone
		}
		off := req.offset + uint64(s.off)
		if s.zero {
			putChunkHeader(h, req.handle, flags, replyTypeOffsetHole, 12)
			binary.BigEndian.PutUint64(h[20:28], off)
			binary.BigEndian.PutUint32(h[28:32], uint32(s.n))
			r.iov = append(r.iov, h[:32])
			h = h[32:]
			continue
		}
		putChunkHeader(h, req.handle, flags, replyTypeOffsetData, uint32(8+s.n))
		binary.BigEndian.PutUint64(h[20:28], off)
		r.iov = append(r.iov, h[:28], buf[s.off:s.off+s.n])
		h = h[28:]
	}
	if behind {
		c.srv.Metrics.replyBehind()
		c.sendBehind(r)
		return
	}
	c.send(r)
}

// span is a run of a READ buffer: data, or zeroes sent as a hole.
type span struct {
	off, n int
	zero   bool
}

// zeroRuns cuts buf, read at export offset off, into runs of data and
// runs of whole holeGrain-aligned pages of zeroes, merged.
func zeroRuns(buf []byte, off uint64) []span {
	return appendZeroRuns(nil, buf, 0, off)
}

// appendZeroRuns appends to runs the runs of buf[lo:], read at export
// offset off+lo, as zeroRuns cuts them (offsets relative to buf).
func appendZeroRuns(runs []span, buf []byte, lo int, off uint64) []span {
	pos := lo
	if head := int((holeGrain - (off+uint64(lo))%holeGrain) % holeGrain); head > 0 && pos < len(buf) {
		// The part before the first page boundary is sent as data.
		runs = appendRun(runs, span{pos, min(head, len(buf)-pos), false})
		pos += min(head, len(buf)-pos)
	}
	for pos < len(buf) {
		end := min(pos+holeGrain, len(buf))
		whole := end-pos == holeGrain
		runs = appendRun(runs, span{pos, end - pos, whole && allZero(buf[pos:end])})
		pos = end
	}
	return runs
}

// appendRun appends s to runs, merged with the last run if of its kind
// (s starts where the last run ends).
func appendRun(runs []span, s span) []span {
	if k := len(runs) - 1; k >= 0 && runs[k].zero == s.zero {
		runs[k].n += s.n
		return runs
	}
	return append(runs, s)
}

// readRuns is zeroRuns for a buffer read at export offset off whose holes
// (in order) were left unfilled: they are zero runs as they are, and only
// the rest is scanned.
func readRuns(buf []byte, off uint64, holes []span) []span {
	if len(holes) == 0 && allZero(buf) {
		return []span{{0, len(buf), true}}
	}
	var runs []span
	pos := 0
	for _, h := range holes {
		runs = appendZeroRuns(runs, buf[:h.off], pos, off)
		runs = appendRun(runs, h)
		pos = h.off + h.n
	}
	return appendZeroRuns(runs, buf, pos, off)
}

// coarsen turns the zero runs of runs shorter than minHole into data,
// merged with the data around them, unless the zeroes are all of buf;
// it clears them in buf, where a backend's hole left them unfilled.
func coarsen(runs []span, buf []byte) []span {
	if len(runs) <= 1 {
		return runs
	}
	out := runs[:0]
	for _, s := range runs {
		if s.zero && s.n < minHole {
			clear(buf[s.off : s.off+s.n])
			s.zero = false
		}
		out = appendRun(out, s)
	}
	return out
}

// chunkHeadersLen is the header bytes the chunks of runs take.
func chunkHeadersLen(runs []span) int {
	n := 0
	for _, s := range runs {
		if s.zero {
			n += 32
		} else {
			n += 28
		}
	}
	return n
}

func (c *conn) blockStatus(req request, hold *holding) {
	off, end := int64(req.offset), int64(req.offset)+int64(req.length)
	type desc struct{ n, flags uint32 }
	var ds []desc
	if bs, ok := c.exp.Backend.(BlockStatuser); ok {
		exts, err := bs.BlockStatus(off, end-off)
		if err != nil {
			c.log.Warn("nbd backend block status error", "offset", off, "length", req.length, "err", err)
			c.replyErr(req, errnoFor(err), "block status failed", hold)
			return
		}
		pos := off
		for _, e := range exts {
			if e.Offset > pos || len(ds) >= maxExtents {
				break // a gap or enough: report the consecutive prefix
			}
			s, t := max(e.Offset, pos), min(e.Offset+e.Length, end)
			if t <= s {
				continue
			}
			var f uint32
			if e.Hole {
				f |= stateHole
			}
			if e.Zero {
				f |= stateZero
			}
			if k := len(ds) - 1; k >= 0 && ds[k].flags == f {
				ds[k].n += uint32(t - s)
			} else {
				ds = append(ds, desc{uint32(t - s), f})
			}
			pos = t
			if pos >= end {
				break
			}
		}
	}
	if len(ds) == 0 {
		ds = []desc{{req.length, 0}} // allocated, contents unknown
	}
	if req.flags&cmdFlagReqOne != 0 {
		ds = ds[:1]
	}
	plen := 4 + 8*len(ds)
	r := c.newReply(hold, 20+plen)
	putChunkHeader(r.hdr, req.handle, replyFlagDone, replyTypeBlockStatus, uint32(plen))
	p := r.hdr[20:]
	binary.BigEndian.PutUint32(p[0:4], metaContextID)
	for i, d := range ds {
		binary.BigEndian.PutUint32(p[4+8*i:], d.n)
		binary.BigEndian.PutUint32(p[8+8*i:], d.flags)
	}
	c.send(r)
}

// replyErr queues an error reply in the negotiated style. A structured
// reply carries msg; READ errors must be structured once negotiated.
func (c *conn) replyErr(req request, errno uint32, msg string, hold *holding) {
	c.srv.Metrics.requestFailed(req)
	c.log.Debug("nbd request refused", "cmd", req.typ, "flags", req.flags, "offset", req.offset, "length", req.length, "errno", errno, "why", msg)
	if !c.structured {
		r := c.newReply(hold, 16)
		putSimpleHeader(r.hdr, req.handle, errno)
		c.send(r)
		return
	}
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	r := c.newReply(hold, 20+6+len(msg))
	putChunkHeader(r.hdr, req.handle, replyFlagDone, replyTypeError, uint32(6+len(msg)))
	p := r.hdr[20:]
	binary.BigEndian.PutUint32(p[0:4], errno)
	binary.BigEndian.PutUint16(p[4:6], uint16(len(msg)))
	copy(p[6:], msg)
	c.send(r)
}

func putSimpleHeader(h []byte, handle uint64, errno uint32) {
	binary.BigEndian.PutUint32(h[0:4], magicSimpleReply)
	binary.BigEndian.PutUint32(h[4:8], errno)
	binary.BigEndian.PutUint64(h[8:16], handle)
}

func putChunkHeader(h []byte, handle uint64, flags, typ uint16, length uint32) {
	binary.BigEndian.PutUint32(h[0:4], magicStructReply)
	binary.BigEndian.PutUint16(h[4:6], flags)
	binary.BigEndian.PutUint16(h[6:8], typ)
	binary.BigEndian.PutUint64(h[8:16], handle)
	binary.BigEndian.PutUint32(h[16:20], length)
}

// outReply is one reply waiting to be written: iov are its bytes in order
// (header bytes live in hdr), data the pooled READ buffer they may point
// into, hold what its request holds until the reply is written.
type outReply struct {
	iov  [][]byte
	hdr  []byte
	data []byte
	hold *holding
}

var replyPool = sync.Pool{New: func() any { return &outReply{iov: make([][]byte, 0, 8)} }}

// newReply returns a reply with hdr of n bytes (from the buffer pool) and,
// unless the caller appends its own iov, hdr as its only buffer.
func (c *conn) newReply(hold *holding, n int) *outReply {
	r := replyPool.Get().(*outReply)
	r.hdr = getBuf(n)
	r.hold = hold
	return r
}

// send queues r and writes it. Replies are written by whichever request
// goroutine finds no write in progress: it writes every reply queued
// meanwhile with one writev, and more until the queue is empty, so that
// under load replies leave in batches (one system call for many) and a
// lone reply still leaves at once. A failed write closes the connection:
// the client can no longer parse the stream.
func (c *conn) send(r *outReply) {
	if c.enqueue(r) {
		c.writeQueued()
	}
}

// enqueue queues r. When no write is in progress it marks one started
// and returns true with c.wmu held: the caller writes the queue
// (writeQueued). Otherwise a writer will take r, and it returns false
// with c.wmu released.
func (c *conn) enqueue(r *outReply) bool {
	if len(r.iov) == 0 {
		r.iov = append(r.iov, r.hdr)
	}
	c.wmu.Lock()
	c.queue = append(c.queue, r)
	if c.writing {
		c.wmu.Unlock()
		return false
	}
	c.writing = true
	return true
}

// sendBehind queues r as send does, but when no write is in progress it
// leaves the writing to a new goroutine (counted in c.inflight) instead
// of writing itself. The reader of the one plain connection transmitting
// uses it for a large READ's reply when another request is waiting: it
// copies the next request's data from the file while the reply's bytes
// are copied into the socket, where one thread did both copies in turn
// and bounded the connection's large reads (docs/design.md, "Session
// perf14al").
func (c *conn) sendBehind(r *outReply) {
	if !c.enqueue(r) {
		return
	}
	c.wmu.Unlock()
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		c.wmu.Lock()
		c.writeQueued()
	}()
}

// writeQueued writes the queued replies, and those queued meanwhile,
// until the queue is empty, then clears c.writing. c.wmu is held, and
// is released on return; the caller set c.writing.
func (c *conn) writeQueued() {
	for len(c.queue) > 0 {
		batch := c.queue
		c.queue = c.spare[:0]
		failed := c.broken
		c.wmu.Unlock()

		var err error
		if !failed {
			err = c.writeBatch(batch)
		}
		for i, r := range batch {
			c.release(r.hold)
			putBuf(r.hdr)
			if r.data != nil {
				putBuf(r.data)
			}
			clear(r.iov)
			*r = outReply{iov: r.iov[:0]}
			replyPool.Put(r)
			batch[i] = nil
		}

		c.wmu.Lock()
		c.spare = batch[:0]
		if err != nil && !c.broken {
			c.broken = true
			c.log.Debug("nbd reply write failed, closing", "err", err)
			c.abort()
		}
	}
	c.writing = false
	c.wmu.Unlock()
}

// writeBatch writes the replies of batch, in order: with one writev on a
// plain TCP connection; gathered into one buffer per 256 KiB on others
// (TLS, where each Write is a record).
func (c *conn) writeBatch(batch []*outReply) error {
	c.iov = c.iov[:0]
	for _, r := range batch {
		c.iov = append(c.iov, r.iov...)
	}
	defer clear(c.iov)
	if c.sock != nil {
		return c.sock.writev(c.iov)
	}
	if _, ok := c.rw.(*net.TCPConn); ok {
		bufs := c.iov // WriteTo consumes its receiver
		_, err := bufs.WriteTo(c.rw)
		return err
	}
	const gather = 256 << 10
	buf := getBuf(gather)[:0]
	defer putBuf(buf[:gather])
	for _, b := range c.iov {
		if len(buf)+len(b) > gather && len(buf) > 0 {
			if _, err := c.rw.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
		if len(b) > gather {
			if _, err := c.rw.Write(b); err != nil {
				return err
			}
			continue
		}
		buf = append(buf, b...)
	}
	if len(buf) > 0 {
		_, err := c.rw.Write(buf)
		return err
	}
	return nil
}

func flush(b Backend) error {
	if f, ok := b.(Flusher); ok {
		return f.Flush()
	}
	return nil
}

func writeZeroBuffers(w Writer, off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroes)))
		if _, err := w.WriteAt(zeroes[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// errnoFor maps a backend error to an NBD error value.
func errnoFor(err error) uint32 {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return errnoNoSpc
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return errnoPerm
	case errors.Is(err, syscall.EINVAL):
		return errnoInval
	case errors.Is(err, syscall.ESHUTDOWN):
		return errnoShutdown
	default:
		return errnoIO
	}
}

func allZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeroes))
		if !bytes.Equal(b[:k], zeroes[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}

// Buffers come from power-of-two size classes, 64 bytes up to 2 GiB.
const minBufShift = 6

var bufPools [32]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return minBufShift
	}
	return bits.Len(uint(n - 1))
}

func getBuf(n int) []byte {
	cl := bufClass(n)
	if p, ok := bufPools[cl].Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, 1<<cl)
}

func putBuf(b []byte) {
	cl := bufClass(cap(b))
	if cap(b) != 1<<cl {
		return
	}
	bufPools[cl].Put(&b)
}

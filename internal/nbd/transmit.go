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
	"sync"
	"syscall"

	"golang.org/x/sync/semaphore"
)

// maxExtents bounds the descriptors in one BLOCK_STATUS reply; the client
// asks again for the rest.
const maxExtents = 1 << 16

// zeroes is a shared all-zero buffer; it is only ever read.
var zeroes = make([]byte, 1<<20)

func (c *conn) transmit(ctx context.Context, exp *Export) {
	c.slots = make(chan struct{}, c.srv.maxInFlight())
	c.budget = semaphore.NewWeighted(c.srv.maxBuffered())
	c.br = bufio.NewReaderSize(c.rw, 64<<10)
	defer c.inflight.Wait()

	maxReq := uint32(c.srv.maxRequest())
	var hdr [requestSize]byte
	for {
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.log.Debug("nbd connection read ended", "err", err)
			}
			return
		}
		req, err := decodeRequest(hdr[:])
		if err != nil {
			// Without a valid header the stream cannot be resynchronised.
			c.log.Info("nbd protocol violation, disconnecting", "err", err)
			return
		}
		if req.typ == cmdDisc {
			return
		}
		weight := int64(0)
		if req.typ == cmdRead || req.typ == cmdWrite {
			if req.length > maxReq {
				if req.typ == cmdWrite {
					// Skip the payload without buffering it.
					if _, err := io.CopyN(io.Discard, c.br, int64(req.length)); err != nil {
						return
					}
				}
				c.replyErr(req, errnoOverflow, fmt.Sprintf("request length %d exceeds maximum %d", req.length, maxReq))
				continue
			}
			weight = int64(req.length)
		}
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if err := c.budget.Acquire(ctx, weight); err != nil {
			<-c.slots
			return
		}
		var payload []byte
		if req.typ == cmdWrite {
			payload = getBuf(int(req.length))
			if _, err := io.ReadFull(c.br, payload); err != nil {
				putBuf(payload)
				c.budget.Release(weight)
				<-c.slots
				return
			}
		}
		c.inflight.Add(1)
		start := c.srv.clock().Now()
		go func() {
			defer func() {
				if r := recover(); r != nil {
					c.log.Error("nbd request panicked", "panic", fmt.Sprint(r), "cmd", req.typ)
					c.nc.Close()
				}
				c.budget.Release(weight)
				<-c.slots
				c.inflight.Done()
			}()
			c.handle(req, payload)
			c.srv.Metrics.request(req, c.srv.clock().Now().Sub(start))
		}()
	}
}

// handle executes one request and sends its reply. payload is the WRITE
// data (owned by handle).
func (c *conn) handle(req request, payload []byte) {
	if payload != nil {
		defer putBuf(payload)
	}
	errno, msg := c.check(req)
	if errno != 0 {
		c.replyErr(req, errno, msg)
		return
	}
	b := c.exp.Backend
	off, n := int64(req.offset), int64(req.length)
	var err error
	switch req.typ {
	case cmdRead:
		c.read(req)
		return
	case cmdBlockStatus:
		c.blockStatus(req)
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
		if ok && req.flags&cmdFlagNoHole == 0 {
			err = z.WriteZeroes(off, n)
		} else {
			err = writeZeroBuffers(b.(Writer), off, n)
		}
	}
	if err == nil && req.flags&cmdFlagFUA != 0 && req.typ != cmdFlush {
		err = flush(b)
	}
	if err != nil {
		c.log.Warn("nbd backend error", "cmd", req.typ, "offset", off, "length", n, "err", err)
		c.replyErr(req, errnoFor(err), "backend error")
		return
	}
	c.replySimple(req.handle, 0, nil)
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

func (c *conn) read(req request) {
	buf := getBuf(int(req.length))
	defer putBuf(buf)
	n, err := c.exp.Backend.ReadAt(buf, int64(req.offset))
	if errors.Is(err, io.EOF) && n == len(buf) {
		err = nil
	}
	if err == nil && n != len(buf) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		c.log.Warn("nbd backend read error", "offset", req.offset, "length", req.length, "err", err)
		c.replyErr(req, errnoFor(err), "read failed")
		return
	}
	if !c.structured {
		c.replySimple(req.handle, 0, buf)
		return
	}
	switch {
	case len(buf) == 0:
		c.replyChunk(req.handle, replyFlagDone, replyTypeNone, nil, nil)
	case allZero(buf):
		var p [12]byte
		binary.BigEndian.PutUint64(p[0:8], req.offset)
		binary.BigEndian.PutUint32(p[8:12], req.length)
		c.replyChunk(req.handle, replyFlagDone, replyTypeOffsetHole, p[:], nil)
	default:
		var p [8]byte
		binary.BigEndian.PutUint64(p[0:8], req.offset)
		c.replyChunk(req.handle, replyFlagDone, replyTypeOffsetData, p[:], buf)
	}
}

func (c *conn) blockStatus(req request) {
	off, end := int64(req.offset), int64(req.offset)+int64(req.length)
	type desc struct{ n, flags uint32 }
	var ds []desc
	if bs, ok := c.exp.Backend.(BlockStatuser); ok {
		exts, err := bs.BlockStatus(off, end-off)
		if err != nil {
			c.log.Warn("nbd backend block status error", "offset", off, "length", req.length, "err", err)
			c.replyErr(req, errnoFor(err), "block status failed")
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
	p := make([]byte, 4+8*len(ds))
	binary.BigEndian.PutUint32(p[0:4], metaContextID)
	for i, d := range ds {
		binary.BigEndian.PutUint32(p[4+8*i:], d.n)
		binary.BigEndian.PutUint32(p[8+8*i:], d.flags)
	}
	c.replyChunk(req.handle, replyFlagDone, replyTypeBlockStatus, p, nil)
}

// replyErr sends an error reply in the negotiated style. A structured
// reply carries msg; READ errors must be structured once negotiated.
func (c *conn) replyErr(req request, errno uint32, msg string) {
	c.srv.Metrics.requestFailed(req)
	c.log.Debug("nbd request refused", "cmd", req.typ, "flags", req.flags, "offset", req.offset, "length", req.length, "errno", errno, "why", msg)
	if !c.structured {
		c.replySimple(req.handle, errno, nil)
		return
	}
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	p := make([]byte, 6+len(msg))
	binary.BigEndian.PutUint32(p[0:4], errno)
	binary.BigEndian.PutUint16(p[4:6], uint16(len(msg)))
	copy(p[6:], msg)
	c.replyChunk(req.handle, replyFlagDone, replyTypeError, p, nil)
}

func (c *conn) replySimple(handle uint64, errno uint32, data []byte) {
	var h [16]byte
	binary.BigEndian.PutUint32(h[0:4], magicSimpleReply)
	binary.BigEndian.PutUint32(h[4:8], errno)
	binary.BigEndian.PutUint64(h[8:16], handle)
	c.send(h[:], data)
}

func (c *conn) replyChunk(handle uint64, flags, typ uint16, head, data []byte) {
	h := make([]byte, 20+len(head))
	binary.BigEndian.PutUint32(h[0:4], magicStructReply)
	binary.BigEndian.PutUint16(h[4:6], flags)
	binary.BigEndian.PutUint16(h[6:8], typ)
	binary.BigEndian.PutUint64(h[8:16], handle)
	binary.BigEndian.PutUint32(h[16:20], uint32(len(head)+len(data)))
	copy(h[20:], head)
	c.send(h, data)
}

// send writes one whole reply; a failed write closes the connection, since
// the client can no longer parse the stream.
func (c *conn) send(head, data []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	if len(data) == 0 {
		_, err = c.rw.Write(head)
	} else {
		bufs := net.Buffers{head, data}
		_, err = bufs.WriteTo(c.rw)
	}
	if err != nil {
		c.log.Debug("nbd reply write failed, closing", "err", err)
		c.nc.Close()
	}
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

// Buffers come from power-of-two size classes, 4 KiB up to 2 GiB.
const minBufShift = 12

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

//go:build linux

package nbd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"coffer/internal/nbd"
	"coffer/internal/nbd/nbdtest"
	"coffer/internal/testenv"
)

// TestReadSendsZeroPagesAsHoles: a structured READ sends the runs of
// aligned 4 KiB pages that read as zeroes as OFFSET_HOLE chunks when they
// are at least 64 KiB long or the whole reply, and the rest, shorter zero
// runs included, as OFFSET_DATA chunks: a sparse read carries no zero
// bytes, and a read of scattered written pages is not cut into a chunk
// per page. With DF the reply is one chunk.
func TestReadSendsZeroPagesAsHoles(t *testing.T) {
	fx := newProtoFixture(t, nil)
	c := fx.dial(t, "rw", nbdtest.Options{Structured: true})
	const at = 2 << 20
	const page = 4096
	// Pages (written: allocated, yet zeroes where not filled): 0 data,
	// 1-2 zero, 3 data, 4-19 zero (64 KiB), 20 data, 21-35 zero (60
	// KiB), 36 data, 37-39 zero.
	img := make([]byte, 40*page)
	for _, p := range []int{0, 3, 20, 36} {
		copy(img[p*page:(p+1)*page], bytes.Repeat([]byte{byte(p + 1)}, page))
	}
	if _, err := c.WriteAt(img, at); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		flags      uint16
		off, n     int
		holes      [][2]uint64
		dataChunks int
	}{
		{"aligned", 0, 0, len(img), [][2]uint64{{4 * page, 16 * page}}, 2},
		// The part before the first page boundary is data even if zero.
		{"unaligned start", 0, page + 100, len(img) - page - 100, [][2]uint64{{3*page - 100, 16 * page}}, 2},
		{"zero runs shorter than 64 KiB", 0, 20 * page, 20 * page, nil, 1},
		// A zero run cut by the end of the read to less than 64 KiB of
		// whole pages is data.
		{"short zero run at the end", 0, 0, 20*page - 1000, nil, 1},
		{"all zeroes, short", 0, page, 2 * page, [][2]uint64{{0, 2 * page}}, 0},
		{"DF: one chunk", nbdtest.CmdFlagDF, 0, len(img), nil, 1},
		{"all zeroes with DF: one hole", nbdtest.CmdFlagDF, 4 * page, 16 * page, [][2]uint64{{0, 16 * page}}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.Do(nbdtest.CmdRead, tc.flags, uint64(at+tc.off), uint32(tc.n), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.Data, img[tc.off:tc.off+tc.n]) {
				t.Fatal("data differs")
			}
			if !slices.Equal(r.HoleSpans, tc.holes) || r.DataChunks != tc.dataChunks {
				t.Errorf("holes %v and %d data chunks, want holes %v and %d data chunks", r.HoleSpans, r.DataChunks, tc.holes, tc.dataChunks)
			}
		})
	}
	c.Disconnect()
}

// plainBackend is a writable backend without WriteZeroes.
type plainBackend struct{ f *nbdtest.File }

func (b plainBackend) Size() int64                              { return b.f.Size() }
func (b plainBackend) ReadAt(p []byte, off int64) (int, error)  { return b.f.ReadAt(p, off) }
func (b plainBackend) WriteAt(p []byte, off int64) (int, error) { return b.f.WriteAt(p, off) }

// TestFastZero: WRITE_ZEROES with FAST_ZERO is advertised when the backend
// zeroes by deallocating; it succeeds when a hole may be punched and fails
// at once with ENOTSUP, changing nothing, when NO_HOLE asks for written
// zeroes. A backend that can only write zero buffers does not advertise it
// and the flag is refused.
func TestFastZero(t *testing.T) {
	fx := newProtoFixture(t, nil)
	c := fx.dial(t, "rw", nbdtest.Options{Structured: true})
	if c.Flags&nbdtest.FlagSendFastZero == 0 {
		t.Fatalf("transmission flags %#x lack SEND_FAST_ZERO", c.Flags)
	}
	const at = 1 << 20 // seeded with data
	if _, err := c.Do(nbdtest.CmdWriteZeroes, nbdtest.CmdFlagFastZero, at, 8192, nil); err != nil {
		t.Fatalf("fast zero: %v", err)
	}
	r, err := c.Do(nbdtest.CmdBlockStatus, 0, at, 8192, nil)
	if err != nil || len(r.Extents) != 1 || r.Extents[0] != (nbdtest.Extent{Length: 8192, Flags: 3}) {
		t.Fatalf("after fast zero: extents %v, %v; want one hole", r.Extents, err)
	}
	before := hashBackend(t, fx.rw)
	_, err = c.Do(nbdtest.CmdWriteZeroes, nbdtest.CmdFlagFastZero|nbdtest.CmdFlagNoHole, at+8192, 8192, nil)
	wantErrno(t, "fast zero with NO_HOLE", err, nbdtest.ENOTSUP)
	if hashBackend(t, fx.rw) != before {
		t.Error("a refused fast zero changed the export")
	}
	c.Disconnect()

	_, pc := serveOne(t, "plain", plainBackend{fileBackend(t, 1<<20)})
	if pc.Flags&nbdtest.FlagSendFastZero != 0 {
		t.Errorf("transmission flags %#x: SEND_FAST_ZERO without a Zeroer", pc.Flags)
	}
	if _, err := pc.Do(nbdtest.CmdWriteZeroes, 0, 0, 4096, nil); err != nil {
		t.Errorf("write zeroes by writing: %v", err)
	}
	_, err = pc.Do(nbdtest.CmdWriteZeroes, nbdtest.CmdFlagFastZero, 0, 4096, nil)
	wantErrno(t, "fast zero not negotiated", err, nbdtest.EINVAL)
}

// durableBackend models a disk with a volatile cache: writes land in the
// cache, Flush makes everything written so far durable.
type durableBackend struct {
	mu             sync.Mutex
	cache, durable []byte
	flushes        int
}

func (b *durableBackend) Size() int64 { return int64(len(b.cache)) }

func (b *durableBackend) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return copy(p, b.cache[off:]), nil
}

func (b *durableBackend) WriteAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return copy(b.cache[off:], p), nil
}

func (b *durableBackend) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	copy(b.durable, b.cache)
	b.flushes++
	return nil
}

// TestFlushCoversEveryConnection: with multi-conn advertised, a FLUSH on
// one connection makes durable the writes every connection had completed
// before it (NBD_FLAG_CAN_MULTI_CONN's promise), here writes pipelined on
// three other connections.
func TestFlushCoversEveryConnection(t *testing.T) {
	const size = 1 << 20
	b := &durableBackend{cache: make([]byte, size), durable: make([]byte, size)}
	ex := &exports{}
	ex.add("disk", b, false)
	addr, _ := startServer(t, ex, nil)
	dial := func() *nbdtest.Client {
		c, err := nbdtest.Dial(t.Context(), addr, "disk", nbdtest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if c.Flags&nbdtest.FlagCanMultiConn == 0 {
			t.Fatalf("transmission flags %#x lack CAN_MULTI_CONN", c.Flags)
		}
		return c
	}
	flusher := dial()
	want := make([]byte, size)
	var wg sync.WaitGroup
	for w := range 3 {
		c := dial()
		wg.Go(func() {
			// 64 writes in flight at once, then every reply.
			const n = 64
			for i := range n {
				p := bytes.Repeat([]byte{byte(1 + w*n + i)}, 4096)
				if err := c.SendRequest(nbdtest.CmdWrite, 0, uint64((w*n+i)*4096), 4096, p); err != nil {
					t.Error(err)
					return
				}
			}
			for range n {
				var h [16]byte // simple replies, in any order
				if _, err := io.ReadFull(c.Conn, h[:]); err != nil || binary.BigEndian.Uint32(h[4:8]) != 0 {
					t.Errorf("write reply %x: %v", h, err)
					return
				}
			}
		})
		for i := range 64 {
			copy(want[(w*64+i)*4096:], bytes.Repeat([]byte{byte(1 + w*64 + i)}, 4096))
		}
	}
	wg.Wait()
	if _, err := flusher.Do(nbdtest.CmdFlush, 0, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.flushes != 1 {
		t.Errorf("%d backend flushes, want 1", b.flushes)
	}
	if !bytes.Equal(b.durable, want) {
		t.Fatal("a write completed on another connection was not durable after the FLUSH")
	}
}

// TestNbdinfoSeesDataPathFeatures: nbdinfo reads what fast clients look
// for: multi-conn, fast zero, zeroing, trim, flush, FUA, block status and
// structured replies, and the block-size constraints.
func TestNbdinfoSeesDataPathFeatures(t *testing.T) {
	testenv.NeedProgram(t, "nbdinfo")
	fx := newProtoFixture(t, func(s *nbd.Server) { s.MaxRequest = 32 << 20 })
	var info struct {
		Exports []map[string]any `json:"exports"`
	}
	out := run(t, "nbdinfo", "--json", nbdURI(fx.addr, "rw"))
	if err := json.Unmarshal([]byte(out), &info); err != nil || len(info.Exports) != 1 {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	e := info.Exports[0]
	for _, k := range []string{"can_multi_conn", "can_fast_zero", "can_zero", "can_trim", "can_flush", "can_fua"} {
		if e[k] != true {
			t.Errorf("%s = %v, want true", k, e[k])
		}
	}
	for k, v := range map[string]float64{"block_size_minimum": 1, "block_size_preferred": 4096, "block_size_maximum": 32 << 20} {
		if e[k] != v {
			t.Errorf("%s = %v, want %v", k, e[k], v)
		}
	}
	contexts := fmt.Sprint(e["contexts"])
	if !bytes.Contains([]byte(contexts), []byte("base:allocation")) {
		t.Errorf("contexts %s lack base:allocation", contexts)
	}
	if out := run(t, "nbdinfo", "--json", nbdURI(fx.addr, "ro")); !bytes.Contains([]byte(out), []byte(`"can_fast_zero": false`)) {
		t.Errorf("read-only export: nbdinfo --json\n%s\nwant can_fast_zero false", out)
	}
}

// inlineFile is a file backend that is also an Inliner: mode says what its
// Try methods do. It counts which path served each request.
type inlineFile struct {
	*nbdtest.File
	mu                    sync.Mutex
	mode                  string // "ok", "refuse" or "fail"
	tryReads, tryWrites   int
	slowReads, slowWrites int
}

func (f *inlineFile) try(write bool) (ok bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch f.mode {
	case "refuse":
		return false, nil
	case "fail":
		err = fs.ErrPermission
	}
	if write {
		f.tryWrites++
	} else {
		f.tryReads++
	}
	return true, err
}

func (f *inlineFile) TryReadAt(p []byte, off int64) (int, bool, error) {
	ok, err := f.try(false)
	if !ok || err != nil {
		return 0, ok, err
	}
	n, err := f.File.ReadAt(p, off)
	return n, true, err
}

func (f *inlineFile) TryWriteAt(p []byte, off int64) (bool, error) {
	ok, err := f.try(true)
	if !ok || err != nil {
		return ok, err
	}
	_, err = f.File.WriteAt(p, off)
	return true, err
}

func (f *inlineFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.slowReads++
	f.mu.Unlock()
	return f.File.ReadAt(p, off)
}

func (f *inlineFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	f.slowWrites++
	f.mu.Unlock()
	return f.File.WriteAt(p, off)
}

// TestInlineRequests: with an Inliner backend, READ and WRITE are served
// by its Try methods when they accept, with their errors answered as
// usual; when they refuse (or for a FUA write) the request takes the usual
// path; the data is right either way.
func TestInlineRequests(t *testing.T) {
	f := &inlineFile{File: fileBackend(t, 1<<20), mode: "ok"}
	_, c := serveOne(t, "disk", f)
	counts := func() [4]int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return [4]int{f.tryReads, f.tryWrites, f.slowReads, f.slowWrites}
	}
	p := bytes.Repeat([]byte("inline!!"), 512)
	if _, err := c.WriteAt(p, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	if _, err := c.ReadAt(got, 4096); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("inline read back: %v", err)
	}
	if n := counts(); n != [4]int{1, 1, 0, 0} {
		t.Errorf("accepting Try methods: [try reads, try writes, reads, writes] = %v, want [1 1 0 0]", n)
	}
	// A large read is not served inline: its copy would hold up the
	// connection's other requests.
	big := make([]byte, 1<<20)
	if _, err := c.ReadAt(big, 0); err != nil {
		t.Fatal(err)
	}
	if n := counts(); n != [4]int{1, 1, 1, 0} {
		t.Errorf("1 MiB read: %v, want it served by ReadAt", n)
	}
	// A large write is: its payload is in memory already.
	if _, err := c.WriteAt(big, 0); err != nil {
		t.Fatal(err)
	}
	if n := counts(); n != [4]int{1, 2, 1, 0} {
		t.Errorf("1 MiB write: %v, want it served by TryWriteAt", n)
	}
	// FUA needs a flush after the write: never inline.
	if _, err := c.Do(nbdtest.CmdWrite, nbdtest.CmdFlagFUA, 0, 4096, p[:4096]); err != nil {
		t.Fatal(err)
	}
	if n := counts(); n[3] != 1 {
		t.Errorf("FUA write: %v, want it served by WriteAt", n)
	}

	f.mu.Lock()
	f.mode = "refuse"
	f.mu.Unlock()
	q := bytes.Repeat([]byte("usual..."), 512)
	if _, err := c.WriteAt(q, 8192); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(got, 8192); err != nil || !bytes.Equal(got, q) {
		t.Fatalf("read back on the usual path: %v", err)
	}
	if n := counts(); n != [4]int{1, 2, 2, 2} {
		t.Errorf("refusing Try methods: %v, want [1 2 2 2]", n)
	}

	f.mu.Lock()
	f.mode = "fail"
	f.mu.Unlock()
	before := hashBackend(t, f.File)
	_, err := c.WriteAt(p, 0)
	wantErrno(t, "failed inline write", err, nbdtest.EPERM)
	_, err = c.ReadAt(got, 0)
	wantErrno(t, "failed inline read", err, nbdtest.EPERM)
	if hashBackend(t, f.File) != before {
		t.Error("a failed inline write changed the export")
	}
	// The connection still works after errors.
	f.mu.Lock()
	f.mode = "ok"
	f.mu.Unlock()
	if _, err := c.ReadAt(got, 8192); err != nil || !bytes.Equal(got, q) {
		t.Fatalf("read after errors: %v", err)
	}
}

// writeHeader encodes a WRITE request header (handle 1).
func writeHeader(off uint64, length uint32) []byte {
	h := make([]byte, 28)
	binary.BigEndian.PutUint32(h[0:4], 0x25609513) // NBD_REQUEST_MAGIC
	binary.BigEndian.PutUint16(h[6:8], nbdtest.CmdWrite)
	binary.BigEndian.PutUint64(h[8:16], 1)
	binary.BigEndian.PutUint64(h[16:24], off)
	binary.BigEndian.PutUint32(h[24:28], length)
	return h
}

// TestWritePayloadInPieces: a WRITE payload that arrives in pieces, with
// pauses between them, is written whole (the server reads it straight from
// the socket and sleeps until the rest is there, SO_RCVLOWAT); a request
// that follows, a header alone, is still answered (the low-water mark is
// back at one byte); and a connection drained while a payload is half
// read stops waiting for the rest.
func TestWritePayloadInPieces(t *testing.T) {
	ex := &exports{}
	f := fileBackend(t, 4<<20)
	ex.add("rw", f, false)
	addr, srv := startServer(t, ex, nil)
	c, err := nbdtest.Dial(t.Context(), addr, "rw", nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Conn.SetDeadline(time.Now().Add(20 * time.Second)) // a hang fails, not blocks

	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i*7 + i>>12)
	}
	msg := append(writeHeader(1<<20, uint32(len(payload))), payload...)
	// Pieces of odd sizes, each after a pause long enough for the server
	// to find the socket empty.
	for pos, k := 0, 1000; pos < len(msg); pos, k = pos+k, k*3 {
		end := min(pos+k, len(msg))
		if _, err := c.Conn.Write(msg[pos:end]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var rep [16]byte
	if _, err := io.ReadFull(c.Conn, rep[:]); err != nil {
		t.Fatalf("reply to the write: %v", err)
	}
	if e := binary.BigEndian.Uint32(rep[4:8]); e != 0 {
		t.Fatalf("write failed with errno %d", e)
	}
	got := make([]byte, len(payload))
	if _, err := f.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("backend after the write: differs (%v)", err)
	}
	// A small request after it: the server must wake for its 28 bytes.
	clear(got[:4096])
	if _, err := c.ReadAt(got[:4096], 1<<20+8192); err != nil || !bytes.Equal(got[:4096], payload[8192:8192+4096]) {
		t.Fatalf("read after the write: %v", err)
	}

	// Half a payload, then a graceful shutdown: the connection stops
	// waiting for the rest and closes, and the export is left as it was.
	half := writeHeader(0, 1<<20)
	half = append(half, payload[:1<<19]...)
	if _, err := c.Conn.Write(half); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a payload half read: %v", err)
	}
	waitClosed(t, c.Conn)
	if _, err := f.ReadAt(got[:1<<19], 0); err != nil || !allZeroBytes(got[:1<<19]) {
		t.Fatalf("a half-received write changed the export (%v)", err)
	}
}

func allZeroBytes(p []byte) bool { return bytes.Count(p, []byte{0}) == len(p) }

// sparseFile is a file backend that is a SparseReader: its ReadSparse
// reports the ranges of holes (relative to the export) that overlap the
// read as holes and fills them in p with garbage, which the server must
// never send. TryReadSparse does the same unless refuse is set; then it
// reports a bogus hole over the whole range and refuses.
type sparseFile struct {
	*nbdtest.File
	holes       [][2]int64 // [offset, length], in order
	mu          sync.Mutex
	refuse      bool
	calls, trys int
}

func (f *sparseFile) TryReadSparse(p []byte, off int64, hole func(off, n int64)) (int, bool, error) {
	f.mu.Lock()
	refuse := f.refuse
	f.trys++
	f.mu.Unlock()
	if refuse {
		hole(off, int64(len(p)))
		return 0, false, nil
	}
	n, err := f.readSparse(p, off, hole)
	return n, true, err
}

func (f *sparseFile) ReadSparse(p []byte, off int64, hole func(off, n int64)) (int, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	return f.readSparse(p, off, hole)
}

func (f *sparseFile) readSparse(p []byte, off int64, hole func(off, n int64)) (int, error) {
	n, err := f.File.ReadAt(p, off)
	end := off + int64(len(p))
	for _, h := range f.holes {
		lo, hi := max(h[0], off), min(h[0]+h[1], end)
		if lo < hi {
			for i := lo; i < hi; i++ {
				p[i-off] = 0xEE
			}
			hole(lo, hi-lo)
		}
	}
	return n, err
}

// TestSparseRead: a READ larger than the inline limit goes to a
// SparseReader backend, on the connection's reader (TryReadSparse) or,
// when that refuses, on the usual path (ReadSparse, the refused try's
// holes forgotten); its holes go out as OFFSET_HOLE chunks as they are
// (merged with the zero pages found in the data around them) when at
// least 64 KiB long, and as zeroes in data chunks when shorter, never as
// the bytes the backend left in the buffer there; a client without
// structured replies, or with DF, gets zeroes there as data.
func TestSparseRead(t *testing.T) {
	const size = 4 << 20
	f := &sparseFile{File: fileBackend(t, size)}
	img := make([]byte, size)
	for i := range img {
		img[i] = byte(i*7 + 1)
	}
	clear(img[1<<20 : 1<<20+8192]) // zero pages written as data, after a hole
	if _, err := f.File.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	// Holes: the backend says these read as zeroes (and the model agrees).
	f.holes = [][2]int64{{1<<20 - 15*4096, 15 * 4096}, {2<<20 + 100, 50000}, {3 << 20, 1 << 20}}
	for _, h := range f.holes {
		clear(img[h[0] : h[0]+h[1]])
	}
	ex := &exports{}
	ex.add("disk", f, false)
	m := nbd.NewMetrics()
	addr, _ := startServer(t, ex, func(s *nbd.Server) { s.MaxRequest = 4 << 20; s.Metrics = m })
	cases := []sparseCase{
		{"hole then zero pages merged", true, 0, 1<<20 - 16*4096, 20 * 4096, [][2]uint64{{4096, 17 * 4096}}, 2},
		{"hole shorter than 64 KiB sent as zeroes", true, 0, 2 << 20, 256 << 10, nil, 1},
		{"all hole", true, 0, 3 << 20, 1 << 20, [][2]uint64{{0, 1 << 20}}, 0},
		{"hole at the end", true, 0, 3<<20 - 128<<10, 256 << 10, [][2]uint64{{128 << 10, 128 << 10}}, 1},
		{"DF", true, nbdtest.CmdFlagDF, 2 << 20, 256 << 10, nil, 1},
		{"DF all hole", true, nbdtest.CmdFlagDF, 3 << 20, 1 << 20, [][2]uint64{{0, 1 << 20}}, 0},
		{"simple replies", false, 0, 1<<20 - 16*4096, 1 << 20, nil, 0},
	}
	for _, refuse := range []bool{false, true} {
		f.mu.Lock()
		f.refuse = refuse
		f.mu.Unlock()
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s, try refused %v", tc.name, refuse), func(t *testing.T) {
				sparseReadCase(t, addr, f, m, img, tc)
			})
		}
	}
}

// sparseCase is a READ of TestSparseRead and the reply it must get.
type sparseCase struct {
	name       string
	structured bool
	flags      uint16
	off, n     int
	holes      [][2]uint64
	dataChunks int
}

func sparseReadCase(t *testing.T, addr string, f *sparseFile, m *nbd.Metrics, img []byte, tc sparseCase) {
	c, err := nbdtest.Dial(t.Context(), addr, "disk", nbdtest.Options{Structured: tc.structured})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.mu.Lock()
	calls, trys, refuse := f.calls, f.trys, f.refuse
	f.mu.Unlock()
	handed, _ := m.HandedOff()
	served := m.Served()
	r, err := c.Do(nbdtest.CmdRead, tc.flags, uint64(tc.off), uint32(tc.n), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The metrics count the reply's chunks (before it is sent; the
	// request itself is counted after, maybe after the client has it).
	wantChunks := uint64(0)
	if tc.structured {
		wantChunks = uint64(len(r.HoleSpans) + r.DataChunks)
	}
	if got := m.Served().ReadChunks - served.ReadChunks; got != wantChunks {
		t.Errorf("metrics counted %d reply chunks, want %d", got, wantChunks)
	}
	if !bytes.Equal(r.Data, img[tc.off:tc.off+tc.n]) {
		i := 0
		for i < tc.n && r.Data[i] == img[tc.off+i] {
			i++
		}
		t.Fatalf("data differs at %d: %#x, want %#x", i, r.Data[i], img[tc.off+i])
	}
	if tc.structured && (!slices.Equal(r.HoleSpans, tc.holes) || r.DataChunks != tc.dataChunks) {
		t.Errorf("holes %v and %d data chunks, want holes %v and %d data chunks", r.HoleSpans, r.DataChunks, tc.holes, tc.dataChunks)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// [ReadSparse, TryReadSparse] calls: a READ of up to 64 KiB
	// is never tried (the backend is no Inliner).
	want := [2]int{0, 1}
	switch {
	case tc.n <= 64<<10:
		want = [2]int{1, 0}
	case refuse:
		want = [2]int{1, 1}
	}
	if got := [2]int{f.calls - calls, f.trys - trys}; got != want {
		t.Errorf("[ReadSparse, TryReadSparse] called %v times, want %v", got, want)
	}
	// A READ served by ReadSparse ran on a goroutine: the metric says so.
	if got, _ := m.HandedOff(); got-handed != uint64(want[0]) {
		t.Errorf("%d reads handed off to a goroutine, want %d", got-handed, want[0])
	}
}

// pipelined writes the requests (type, offset, length, payload; handles
// 1, 2, ...) in one write and reads their structured replies, returning
// the handles in the order their last chunks came and each READ's data.
func pipelined(t *testing.T, c *nbdtest.Client, reqs []pipeReq) ([]uint64, map[uint64][]byte) {
	t.Helper()
	writeRequests(t, c, reqs)
	return readReplies(t, c, reqs)
}

// writeRequests writes the requests as pipelined does, in one write.
func writeRequests(t *testing.T, c *nbdtest.Client, reqs []pipeReq) {
	t.Helper()
	var b []byte
	for i, r := range reqs {
		h := make([]byte, 28)
		binary.BigEndian.PutUint32(h[0:4], 0x25609513)
		binary.BigEndian.PutUint16(h[6:8], r.typ)
		binary.BigEndian.PutUint64(h[8:16], uint64(i+1))
		binary.BigEndian.PutUint64(h[16:24], r.off)
		binary.BigEndian.PutUint32(h[24:28], r.n)
		b = append(append(b, h...), r.payload...)
	}
	if _, err := c.Conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readReplies reads the structured replies to reqs, written by
// writeRequests, as pipelined does.
func readReplies(t *testing.T, c *nbdtest.Client, reqs []pipeReq) ([]uint64, map[uint64][]byte) {
	t.Helper()
	var order []uint64
	data := map[uint64][]byte{}
	for len(order) < len(reqs) {
		var h [20]byte
		if _, err := io.ReadFull(c.Conn, h[:16]); err != nil {
			t.Fatal(err)
		}
		switch m := binary.BigEndian.Uint32(h[0:4]); m {
		case 0x67446698: // a simple reply, to a request without data
			if e := binary.BigEndian.Uint32(h[4:8]); e != 0 {
				t.Fatalf("error %d", e)
			}
			order = append(order, binary.BigEndian.Uint64(h[8:16]))
			continue
		case 0x668e33ef:
		default:
			t.Fatalf("reply magic %#x", m)
		}
		if _, err := io.ReadFull(c.Conn, h[16:]); err != nil {
			t.Fatal(err)
		}
		flags, typ := binary.BigEndian.Uint16(h[4:6]), binary.BigEndian.Uint16(h[6:8])
		handle, n := binary.BigEndian.Uint64(h[8:16]), binary.BigEndian.Uint32(h[16:20])
		p := make([]byte, n)
		if _, err := io.ReadFull(c.Conn, p); err != nil {
			t.Fatal(err)
		}
		if handle < 1 || handle > uint64(len(reqs)) {
			t.Fatalf("reply to unknown handle %d", handle)
		}
		r := reqs[handle-1]
		if r.typ == nbdtest.CmdRead && data[handle] == nil {
			data[handle] = make([]byte, r.n)
		}
		switch typ {
		case 1: // OFFSET_DATA
			copy(data[handle][binary.BigEndian.Uint64(p[0:8])-r.off:], p[8:])
		case 2, 5, 0: // OFFSET_HOLE (zeroes), BLOCK_STATUS, NONE
		default:
			t.Fatalf("reply chunk type %d to request %d", typ, handle)
		}
		if flags&1 != 0 {
			order = append(order, handle)
		}
	}
	return order, data
}

type pipeReq struct {
	typ     uint16
	off     uint64
	n       uint32
	payload []byte
}

// TestBlockStatusAhead: a BLOCK_STATUS received behind large READs, with
// nothing but READs before it, is answered before them (their replies
// may wait for the client to read); the READs are then answered in
// order, with their data. Behind a WRITE it waits its turn. (nbdcopy
// waits for BLOCK_STATUS with READs in flight: docs/design.md, perf14ac.)
func TestBlockStatusAhead(t *testing.T) {
	const size = 4 << 20
	f := &sparseFile{File: fileBackend(t, size)}
	img := make([]byte, size)
	for i := range img {
		img[i] = byte(i*5 + 3)
	}
	if _, err := f.File.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	_, c := serveOne(t, "disk", f)
	c.Conn.SetDeadline(time.Now().Add(30 * time.Second))
	const k = 256 << 10
	order, data := pipelined(t, c, []pipeReq{
		{nbdtest.CmdRead, 0, k, nil}, {nbdtest.CmdRead, k, k, nil}, {nbdtest.CmdRead, 2 * k, k, nil},
		{nbdtest.CmdBlockStatus, 0, 1 << 20, nil}, {nbdtest.CmdRead, 3 * k, k, nil},
	})
	if want := []uint64{4, 1, 2, 3, 5}; !slices.Equal(order, want) {
		t.Errorf("replies in the order %v, want %v", order, want)
	}
	for h := uint64(1); h <= 5; h++ {
		if h == 4 {
			continue
		}
		off := map[uint64]int{1: 0, 2: k, 3: 2 * k, 5: 3 * k}[h]
		if !bytes.Equal(data[h], img[off:off+k]) {
			t.Errorf("READ %d: data differs", h)
		}
	}
	// Right behind the READ being served: first too.
	order, _ = pipelined(t, c, []pipeReq{{nbdtest.CmdRead, 0, k, nil}, {nbdtest.CmdBlockStatus, 0, 1 << 20, nil}})
	if want := []uint64{2, 1}; !slices.Equal(order, want) {
		t.Errorf("replies in the order %v, want %v", order, want)
	}
	// Behind a WRITE: not first.
	order, _ = pipelined(t, c, []pipeReq{
		{nbdtest.CmdRead, 0, k, nil}, {nbdtest.CmdWrite, 4 * k, 4096, img[4*k : 4*k+4096]},
		{nbdtest.CmdBlockStatus, 0, 1 << 20, nil},
	})
	if order[0] == 3 {
		t.Errorf("replies in the order %v: the BLOCK_STATUS behind a WRITE went first", order)
	}
}

// TestReplyBehindReader: a large READ's reply, with more requests
// received behind it, is written behind the connection's reader: while
// the client reads no reply (12 MiB of replies, more than the loopback
// socket's buffers hold, so the first replies' writes wait), the reader
// still serves every READ it has received, within the connection's
// limits (16 requests, 64 MiB); the replies then arrive in order with
// their data.
func TestReplyBehindReader(t *testing.T) {
	const size, k, n = 16 << 20, 1 << 20, 12
	addr, m, img := servePattern(t, size, 11, 5)
	c, err := nbdtest.Dial(t.Context(), addr, "disk", nbdtest.Options{Structured: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reqs := largeReads(n, k)
	served := m.Served().Reads
	writeRequests(t, c, reqs)
	deadline := time.Now().Add(time.Minute) // a hang, not a speed
	for m.Served().Reads-served < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d READs served with the client reading no reply: the reader waits for the first reply's write",
				m.Served().Reads-served, n)
		}
		runtime.Gosched()
	}
	if got, _ := m.HandedOff(); got != 0 {
		t.Errorf("%d READs handed off, want all served on the reader", got)
	}
	c.Conn.SetDeadline(time.Now().Add(time.Minute))
	checkReadsInOrder(t, c, reqs, img)
}

// servePattern serves the export "disk" of size bytes holding byte
// i*mul+add at offset i, and returns its address, the server's metrics
// and the bytes.
func servePattern(t *testing.T, size, mul, add int) (string, *nbd.Metrics, []byte) {
	t.Helper()
	f := &sparseFile{File: fileBackend(t, int64(size))}
	img := make([]byte, size)
	for i := range img {
		img[i] = byte(i*mul + add)
	}
	if _, err := f.File.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	ex := &exports{}
	ex.add("disk", f, false)
	m := nbd.NewMetrics()
	addr, _ := startServer(t, ex, func(s *nbd.Server) { s.Metrics = m })
	return addr, m, img
}

// largeReads returns n READs of k bytes each, one after the other from
// offset 0.
func largeReads(n, k int) []pipeReq {
	var reqs []pipeReq
	for i := range n {
		reqs = append(reqs, pipeReq{nbdtest.CmdRead, uint64(i * k), uint32(k), nil})
	}
	return reqs
}

// checkReadsInOrder reads the replies of reqs (largeReads, sent on c)
// and checks that they arrive in the order sent, with img's bytes.
func checkReadsInOrder(t *testing.T, c *nbdtest.Client, reqs []pipeReq, img []byte) {
	t.Helper()
	order, data := readReplies(t, c, reqs)
	want := make([]uint64, len(reqs))
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if !slices.Equal(order, want) {
		t.Errorf("replies in the order %v, want %v", order, want)
	}
	for i, r := range reqs {
		if !bytes.Equal(data[uint64(i+1)], img[r.off:r.off+uint64(r.n)]) {
			t.Errorf("READ %d: data differs", i+1)
		}
	}
}

// TestReplyBehindOnlyOnOneConnection: large READ replies are written
// behind the reader only while a single plain connection transmits. The
// same pipelined 1 MiB READs, on one connection alone, leave replies
// behind the reader; with a second connection in transmission they are
// all answered, in order and with their data, and none is left behind
// (on several connections the other readers' threads overlap the copies
// already and the hand-offs cost CPU: docs/design.md, "Session
// perf14al").
func TestReplyBehindOnlyOnOneConnection(t *testing.T) {
	const size, k, n = 16 << 20, 1 << 20, 12
	addr, m, img := servePattern(t, size, 7, 3)
	dial := func() *nbdtest.Client {
		c, err := nbdtest.Dial(t.Context(), addr, "disk", nbdtest.Options{Structured: true})
		if err != nil {
			t.Fatal(err)
		}
		c.Conn.SetDeadline(time.Now().Add(time.Minute)) // a hang, not a speed
		return c
	}
	reqs := largeReads(n, k)
	// pipeline sends the READs at once on c and checks their replies.
	pipeline := func(c *nbdtest.Client) {
		t.Helper()
		writeRequests(t, c, reqs)
		checkReadsInOrder(t, c, reqs, img)
	}

	a := dial()
	defer a.Close()
	pipeline(a)
	alone := m.RepliesBehind()
	if alone == 0 {
		t.Fatalf("no reply written behind the reader on the one connection transmitting")
	}

	b := dial()
	defer b.Close()
	// A request answered on b: its reader is transmitting.
	if _, err := b.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	pipeline(a)
	if got := m.RepliesBehind() - alone; got != 0 {
		t.Errorf("%d replies written behind the reader with two connections transmitting, want 0", got)
	}
}

package chunkstore_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/local"
	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
	"coffer/internal/directio"
)

// countingBlobs counts ranged reads.
type countingBlobs struct {
	blobstore.Store
	ranges int
}

func (c *countingBlobs) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	c.ranges++
	return c.Store.GetRange(ctx, name, off, n)
}

func getMany(t *testing.T, s *chunkstore.Store, ids []chunk.ID) ([][]byte, error) {
	t.Helper()
	out := make([][]byte, len(ids))
	err := s.GetMany(context.Background(), ids, func(i int, data []byte) error {
		if out[i] != nil {
			t.Errorf("index %d delivered twice", i)
		}
		out[i] = bytes.Clone(data) // data is only valid during the call
		return nil
	})
	return out, err
}

// TestGetManyAcrossPacks: one batch spanning several packs, compressed and
// raw chunks, duplicates, and chunks still in unwritten packs, all checked
// against their IDs; adjacent chunks of a pack are read together.
func TestGetManyAcrossPacks(t *testing.T) {
	cb := &countingBlobs{Store: mem.New()}
	s := newStore(t, cb, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 40 << 10})
	var ids []chunk.ID
	datas := map[chunk.ID][]byte{}
	for i := range 60 {
		d := randomData(uint64(i), 4<<10)
		if i%3 == 0 {
			d = textData(uint64(i), 6<<10)
		}
		id := mustPut(t, s, d)
		datas[id] = d
		ids = append(ids, id)
	}
	mustFlush(t, s)
	if st := stats(t, s); st.Packs < 5 {
		t.Fatalf("only %d packs; the test needs several", st.Packs)
	}
	// Pending chunks (not flushed) are served from memory.
	for i := range 3 {
		d := randomData(uint64(500+i), 3<<10)
		id := mustPut(t, s, d)
		datas[id] = d
		ids = append(ids, id)
	}
	// Reverse order and duplicates.
	batch := append([]chunk.ID(nil), ids...)
	for i, j := 0, len(batch)-1; i < j; i, j = i+1, j-1 {
		batch[i], batch[j] = batch[j], batch[i]
	}
	batch = append(batch, ids[0], ids[10], ids[0])
	cb.ranges = 0
	got, err := getMany(t, s, batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range batch {
		if !bytes.Equal(got[i], datas[id]) {
			t.Fatalf("index %d (%s): wrong data", i, id.Short())
		}
	}
	if st := stats(t, s); int64(cb.ranges) > st.Packs {
		t.Errorf("%d ranged reads for %d packs", cb.ranges, st.Packs)
	}
	mustFlush(t, s)
	if _, err := getMany(t, s, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
}

// TestGetManyMissingAndCorrupt: a missing chunk is ErrNotFound, a flipped
// byte is ErrCorrupt naming pack and chunk, an error from fn is returned.
func TestGetManyMissingAndCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	blobs, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{})
	var ids []chunk.ID
	for i := range 8 {
		ids = append(ids, mustPut(t, s, randomData(uint64(i), 8<<10)))
	}
	mustFlush(t, s)
	if _, err := getMany(t, s, ids); err != nil {
		t.Fatal(err)
	}
	missing := chunk.Hash([]byte("never stored"))
	if _, err := getMany(t, s, append(ids[:2:2], missing)); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Fatalf("missing chunk: %v", err)
	}
	stop := errors.New("stop")
	if err := s.GetMany(ctx, ids, func(int, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn error: %v", err)
	}
	// Flip a byte in the middle of the pack: one chunk fails its check.
	var pack string
	if err := blobs.List(ctx, "packs/", func(in blobstore.Info) error { pack = in.Name; return nil }); err != nil {
		t.Fatal(err)
	}
	path := blobs.Path(pack)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[8+3*(8<<10)+100] ^= 0xff
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".new", b, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	_, err = getMany(t, s, ids)
	if !errors.Is(err, chunkstore.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte(pack)) {
		t.Fatalf("corrupt chunk: %v", err)
	}
}

// TestGetManyAfterGCMove: chunks whose pack GC rewrote (deleted) between
// the lookup and the read, or before it, are still found.
func TestGetManyAfterGCMove(t *testing.T) {
	clk := clock.NewFake(epoch)
	blobs := mem.New()
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk, PackSize: 64 << 10})
	live := newLiveSet()
	datas := map[chunk.ID][]byte{}
	var ids []chunk.ID
	for i := range 24 {
		d := randomData(uint64(i), 4<<10)
		id := mustPut(t, s, d)
		if i%2 == 0 {
			live.add(id)
			datas[id] = d
			ids = append(ids, id)
		}
	}
	mustFlush(t, s)
	clk.Advance(2 * margin)
	gc(t, s, live)
	clk.Advance(2 * margin)
	if rep := gc(t, s, live); rep.PacksRewritten == 0 {
		t.Fatalf("GC rewrote no pack: %+v", rep)
	}
	got, err := getMany(t, s, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if !bytes.Equal(got[i], datas[id]) {
			t.Fatalf("chunk %s: wrong data after GC", id.Short())
		}
	}
}

// rangeCounter counts ranged reads through the local blob store's direct
// path (blobstore.RangeReader) and records whether each read landed in
// the caller's buffer.
type rangeCounter struct {
	*local.Store
	reads, inBuf int
	buf          []byte
}

func (c *rangeCounter) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) ([]byte, error) {
	c.reads++
	data, err := c.Store.ReadRange(ctx, name, off, n, buf)
	if err == nil && len(data) > 0 && within(data, c.buf) {
		c.inBuf++
	}
	return data, err
}

// within reports whether b lies in the memory of buf.
func within(b, buf []byte) bool {
	p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(buf))
}

// TestGetManyInto reads one batch with the caller's read buffer and
// destinations: every chunk is delivered once and exactly, ranged reads go
// into the caller's buffer and are no longer than it allows (so a batch
// holds no other memory), compressed chunks are decompressed in their
// destinations, raw ones and a destination too small are served as
// before, duplicates get the first one's data, and a buffer that is too
// small or unaligned is refused.
func TestGetManyInto(t *testing.T) {
	ctx := context.Background()
	lb, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rbuf := directio.Buffer(chunkstore.MinReadBuf)
	rc := &rangeCounter{Store: lb, buf: rbuf}
	s := newStore(t, rc, chunkstore.NewMemIndex(), chunkstore.Options{})
	// 64 KiB chunks, two thirds compressible: about 2 MiB of records in
	// one pack, so runs must be cut to fit 256 KiB reads.
	var ids []chunk.ID
	datas := map[chunk.ID][]byte{}
	for i := range 48 {
		d := randomData(uint64(i), 64<<10)
		if i%3 != 0 {
			d = textData(uint64(i), 64<<10)
		}
		id := mustPut(t, s, d)
		datas[id] = d
		ids = append(ids, id)
	}
	mustFlush(t, s)
	ids = append(ids, ids[4], ids[3]) // duplicates, compressed and raw
	const small = 7                   // its destination is too small
	dsts := make([][]byte, len(ids))
	for i := range dsts {
		n := 64 << 10
		if i == small {
			n = 100
		}
		dsts[i] = make([]byte, n)
	}
	var inPlace, copied int
	got := make([]bool, len(ids))
	err = s.GetManyInto(ctx, ids, rbuf, 1, func(i int) []byte { return dsts[i] }, func(i int, data []byte) error {
		if got[i] {
			t.Errorf("index %d delivered twice", i)
		}
		got[i] = true
		if !bytes.Equal(data, datas[ids[i]]) {
			t.Errorf("index %d: wrong data", i)
		}
		if &data[0] == &dsts[i][0] {
			inPlace++
		} else {
			copied++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, got)
	// 32 compressed chunks, one of them with a small destination, and a
	// duplicate of a compressed one served from its first's memory.
	if inPlace != 31 || copied != len(ids)-31 {
		t.Errorf("%d chunks decompressed in place, %d not; want 31 and %d", inPlace, copied, len(ids)-31)
	}
	if rc.reads < 2 || rc.inBuf != rc.reads {
		t.Errorf("%d ranged reads, %d of them into the caller's buffer", rc.reads, rc.inBuf)
	}

	for _, bad := range [][]byte{directio.Buffer(chunkstore.MinReadBuf - 1), directio.Buffer(chunkstore.MinReadBuf + 1)[1:]} {
		if err := s.GetManyInto(ctx, ids, bad, 1, nil, func(int, []byte) error { return nil }); err == nil {
			t.Errorf("a read buffer of %d bytes, aligned %v, was taken", len(bad), directio.Aligned(bad[:0], 0))
		}
	}
}

// aheadBlobs is a local blob store whose ranged reads report when they
// start, count those in progress (and the most at once), and fail from
// the failAt-th on (0: never). With within set, it counts the reads into
// memory outside it.
type aheadBlobs struct {
	*local.Store
	started                  chan int // the number of each read as it starts
	active, reads, maxActive atomic.Int32
	failAt                   int32
	within                   []byte
	outside                  atomic.Int32
}

var errInjected = errors.New("injected read failure")

func (a *aheadBlobs) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) ([]byte, error) {
	act := a.active.Add(1)
	defer a.active.Add(-1)
	for m := a.maxActive.Load(); act > m && !a.maxActive.CompareAndSwap(m, act); m = a.maxActive.Load() {
	}
	if a.within != nil && !inside(buf, a.within) {
		a.outside.Add(1)
	}
	k := a.reads.Add(1)
	select {
	case a.started <- int(k):
	default:
	}
	if a.failAt != 0 && k >= a.failAt {
		return nil, errInjected
	}
	return a.Store.ReadRange(ctx, name, off, n, buf)
}

// TestGetManyIntoReadsAhead: with a read buffer of two halves, the next
// run is read while the caller handles the chunks of the previous one (so
// the disk has work while the caller decompresses), every chunk is still
// delivered exactly, and GetManyInto returns only once no read is left in
// progress, whether it succeeds, fn fails, or a read fails.
func TestGetManyIntoReadsAhead(t *testing.T) {
	ctx := context.Background()
	lb, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ab := &aheadBlobs{Store: lb, started: make(chan int, 64)}
	s := newStore(t, ab, chunkstore.NewMemIndex(), chunkstore.Options{})
	var ids []chunk.ID
	datas := map[chunk.ID][]byte{}
	for i := range 64 { // about 4 MiB of random records: several runs
		d := randomData(uint64(100+i), 64<<10)
		id := mustPut(t, s, d)
		datas[id] = d
		ids = append(ids, id)
	}
	mustFlush(t, s)
	rbuf := directio.Buffer(2 * chunkstore.MinReadBuf)

	drain := func() {
		for {
			select {
			case <-ab.started:
			default:
				return
			}
		}
	}
	// The second read starts while fn still holds the first run's first
	// chunk: fn waits for it (a hang guard fails the test instead).
	drain()
	ab.reads.Store(0)
	getAllHolding(t, s, ab, ids, datas, rbuf, 1, 2)
	if n := ab.reads.Load(); n < 3 {
		t.Fatalf("%d ranged reads, want several runs", n)
	}
	if n := ab.active.Load(); n != 0 {
		t.Errorf("%d reads in progress after GetManyInto returned", n)
	}

	// fn fails on the first chunk, with the next read under way: its
	// error comes back, and the read has ended.
	errStop := errors.New("stop")
	drain()
	ab.reads.Store(0)
	err = s.GetManyInto(ctx, ids, rbuf, 1, nil, func(i int, data []byte) error {
		ab.waitRead(t, 2)
		return errStop
	})
	if !errors.Is(err, errStop) || ab.active.Load() != 0 {
		t.Errorf("fn failed: GetManyInto returned %v with %d reads in progress", err, ab.active.Load())
	}

	// The third read fails: its error comes back, wrapped.
	ab.reads.Store(0)
	ab.failAt = 3
	err = s.GetManyInto(ctx, ids, rbuf, 1, nil, func(int, []byte) error { return nil })
	if !errors.Is(err, errInjected) || ab.active.Load() != 0 {
		t.Errorf("a read failed: GetManyInto returned %v with %d reads in progress", err, ab.active.Load())
	}
}

// inside reports whether b's memory lies within m's.
func inside(b, m []byte) bool {
	if len(b) == 0 {
		return false
	}
	lo, hi := uintptr(unsafe.Pointer(&m[0])), uintptr(unsafe.Pointer(&m[0]))+uintptr(len(m))
	p := uintptr(unsafe.Pointer(&b[0]))
	return p >= lo && p+uintptr(len(b)) <= hi
}

// TestGetManyIntoShortRuns: when a batch's chunks lie apart in their
// pack, among chunks of others (packs that several backups wrote at
// once), each is a run of its own, and a read's time is mostly its
// latency: GetManyInto then reads the next ahead runs at once, all into
// the caller's read buffer, while the caller handles the first (one run
// ahead kept a restore job waiting for the disk run after run), and
// never more. Every chunk is delivered exactly.
func TestGetManyIntoShortRuns(t *testing.T) {
	lb, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const ahead = 7
	ab := &aheadBlobs{Store: lb, started: make(chan int, 256)}
	s := newStore(t, ab, chunkstore.NewMemIndex(), chunkstore.Options{})
	var ids []chunk.ID
	datas := map[chunk.ID][]byte{}
	for i := range 4 * (ahead + 1) {
		d := randomData(uint64(1000+i), 16<<10)
		id := mustPut(t, s, d)
		datas[id] = d
		ids = append(ids, id)
		mustPut(t, s, randomData(uint64(5000+i), 96<<10)) // another disk's: wider than a read's gap
	}
	mustFlush(t, s)
	rbuf := directio.Buffer(2 * chunkstore.MinReadBuf)
	ab.within = rbuf
	for len(ab.started) > 0 {
		<-ab.started
	}
	ab.reads.Store(0)
	getAllHolding(t, s, ab, ids, datas, rbuf, ahead, ahead+1)
	if n := ab.reads.Load(); n != int32(len(ids)) {
		t.Errorf("%d ranged reads for %d chunks apart, want one each", n, len(ids))
	}
	if n := ab.maxActive.Load(); n > ahead+1 {
		t.Errorf("%d reads at once, want at most %d", n, ahead+1)
	}
	if n := ab.outside.Load(); n != 0 {
		t.Errorf("%d reads outside the caller's read buffer", n)
	}
	if n := ab.active.Load(); n != 0 {
		t.Errorf("%d reads in progress after GetManyInto returned", n)
	}
}

// getAllHolding reads ids with GetManyInto (rbuf, ahead), holding the
// first chunk delivered until the k-th ranged read of ab has started
// (the test fails if it does not), and checks that every chunk is
// delivered once, with its data.
func getAllHolding(t *testing.T, s *chunkstore.Store, ab *aheadBlobs, ids []chunk.ID, datas map[chunk.ID][]byte, rbuf []byte, ahead, k int) {
	t.Helper()
	got := make([]bool, len(ids))
	first := true
	err := s.GetManyInto(context.Background(), ids, rbuf, ahead, nil, func(i int, data []byte) error {
		if first {
			first = false
			ab.waitRead(t, k)
		}
		if got[i] || !bytes.Equal(data, datas[ids[i]]) {
			t.Errorf("index %d: delivered twice or wrong", i)
		}
		got[i] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDelivered(t, got)
}

// waitRead waits until the k-th ranged read of ab has started; it fails
// the test if that does not happen while the caller waits (no read-ahead).
func (a *aheadBlobs) waitRead(t *testing.T, k int) {
	t.Helper()
	timeout := time.After(10 * time.Second) // a hang guard, not a measurement
	for {
		select {
		case n := <-a.started:
			if n >= k {
				return
			}
		case <-timeout:
			t.Fatalf("ranged read %d did not start while the previous run was handled", k)
		}
	}
}

// checkDelivered fails the test for each index of a batch not delivered.
func checkDelivered(t *testing.T, got []bool) {
	t.Helper()
	for i, ok := range got {
		if !ok {
			t.Errorf("index %d not delivered", i)
		}
	}
}

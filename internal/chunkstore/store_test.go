package chunkstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/local"
	"coffer/internal/blobstore/mem"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newStore(t testing.TB, blobs blobstore.Store, idx chunkstore.Index, opts chunkstore.Options) *chunkstore.Store {
	t.Helper()
	s, err := chunkstore.New(blobs, idx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// randomData returns n pseudo-random (incompressible) bytes.
func randomData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// textData returns n bytes of compressible, seed-dependent text.
func textData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := []string{"block ", "chunk ", "pack ", "index ", "snapshot ", "volume ", "coffer ", "backup "}
	var b bytes.Buffer
	fmt.Fprintf(&b, "seed %d\n", seed)
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func mustPut(t testing.TB, s *chunkstore.Store, data []byte) chunk.ID {
	t.Helper()
	id, err := s.Put(context.Background(), data)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if id != chunk.Hash(data) {
		t.Fatalf("Put returned %s, want the hash", id.Short())
	}
	return id
}

func mustFlush(t testing.TB, s *chunkstore.Store) {
	t.Helper()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func checkGet(t testing.TB, s *chunkstore.Store, id chunk.ID, want []byte) {
	t.Helper()
	got, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id.Short(), err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%s) returned %d bytes that differ from the %d put", id.Short(), len(got), len(want))
	}
}

func mustVerify(t testing.TB, s *chunkstore.Store) chunkstore.Report {
	t.Helper()
	rep, err := s.Verify(context.Background(), chunkstore.VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Verify found problems: %v", rep.Problems)
	}
	return rep
}

func stats(t testing.TB, s *chunkstore.Store) chunkstore.Stats {
	t.Helper()
	st, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func countPacks(t testing.TB, b blobstore.Store) int {
	t.Helper()
	n := 0
	if err := b.List(context.Background(), "packs/", func(blobstore.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	blobs := mem.New()
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{})
	datas := [][]byte{
		{}, {1}, textData(1, 100), textData(2, 64<<10), randomData(3, 64<<10),
		make([]byte, 64<<10), textData(4, 1<<20), randomData(5, 4<<20),
	}
	ids := make([]chunk.ID, len(datas))
	for i, d := range datas {
		ids[i] = mustPut(t, s, d)
	}
	for i, d := range datas {
		checkGet(t, s, ids[i], d) // pending, served from memory
	}
	has, err := s.Has(ctx, append(ids, chunk.Hash([]byte("absent"))))
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range has {
		if h != (i < len(ids)) {
			t.Errorf("Has[%d] = %v", i, h)
		}
	}
	mustFlush(t, s)
	if n := countPacks(t, blobs); n != 1 {
		t.Errorf("%d packs after one Flush, want 1", n)
	}
	for i, d := range datas {
		checkGet(t, s, ids[i], d)
	}
	if _, err := s.Get(ctx, chunk.Hash([]byte("absent"))); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("Get(absent) = %v, want ErrNotFound", err)
	}
	if _, err := s.Put(ctx, make([]byte, chunkstore.MaxChunkSize+1)); !errors.Is(err, chunkstore.ErrTooLarge) {
		t.Errorf("Put(too large) = %v, want ErrTooLarge", err)
	}
	st := stats(t, s)
	if st.Chunks != int64(len(datas)) || st.Packs != 1 || st.PendingChunks != 0 {
		t.Errorf("Stats = %+v", st)
	}
	mustVerify(t, s)
	mustFlush(t, s) // an empty Flush writes nothing
	if n := countPacks(t, blobs); n != 1 {
		t.Errorf("%d packs after an empty Flush, want 1", n)
	}
}

func TestDedup(t *testing.T) {
	blobs := mem.New()
	idx := chunkstore.NewMemIndex()
	s := newStore(t, blobs, idx, chunkstore.Options{})
	data := textData(7, 64<<10)
	id := mustPut(t, s, data)
	for range 5 {
		mustPut(t, s, data) // pending in the open pack
	}
	if st := stats(t, s); st.PendingChunks != 1 {
		t.Errorf("pending chunks = %d, want 1", st.PendingChunks)
	}
	mustFlush(t, s)
	mustPut(t, s, data) // committed
	mustFlush(t, s)
	// Another Store over the same blobs and index.
	s2 := newStore(t, blobs, idx, chunkstore.Options{})
	mustPut(t, s2, data)
	mustFlush(t, s2)
	st := stats(t, s2)
	if st.Chunks != 1 || st.Packs != 1 || st.RawBytes != int64(len(data)) {
		t.Errorf("Stats = %+v, want one chunk of %d raw bytes in one pack", st, len(data))
	}
	if n := countPacks(t, blobs); n != 1 {
		t.Errorf("%d packs, want 1", n)
	}
	checkGet(t, s2, id, data)
}

func TestCompressionDecisions(t *testing.T) {
	ctx := context.Background()
	idx := chunkstore.NewMemIndex()
	s := newStore(t, mem.New(), idx, chunkstore.Options{})
	zeros := make([]byte, 64<<10)
	random := randomData(1, 64<<10)
	text := textData(1, 64<<10)
	// Mostly zero with a random head: the sample check must not reject it.
	mixed := append(randomData(2, 1024), make([]byte, 63<<10)...)
	small := randomData(3, 40)
	ids := []chunk.ID{mustPut(t, s, zeros), mustPut(t, s, random), mustPut(t, s, text), mustPut(t, s, mixed), mustPut(t, s, small)}
	mustFlush(t, s)
	found, err := idx.Lookup(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	want := []chunkstore.Compression{chunkstore.CompressionZstd, chunkstore.CompressionNone, chunkstore.CompressionZstd, chunkstore.CompressionZstd, chunkstore.CompressionNone}
	for i, id := range ids {
		e := found[id]
		if e.Compression != want[i] {
			t.Errorf("chunk %d: compression %v, want %v", i, e.Compression, want[i])
		}
		if e.Compression == chunkstore.CompressionZstd && e.Length >= e.RawLength {
			t.Errorf("chunk %d: compressed to %d of %d bytes", i, e.Length, e.RawLength)
		}
	}
	if e := found[ids[0]]; e.Length > 1024 {
		t.Errorf("64 KiB of zeros stored in %d bytes", e.Length)
	}
	// Encode does Put's work for each and stores nothing.
	for i, data := range [][]byte{zeros, random, text, mixed, small} {
		id, n := s.Encode(data)
		if e := found[ids[i]]; id != ids[i] || n != int(e.Length) {
			t.Errorf("chunk %d: Encode gives %s, %d bytes; Put stored %s in %d bytes", i, id.Short(), n, ids[i].Short(), e.Length)
		}
	}
	textID, _ := s.Encode(textData(9, 4096))
	if _, err := s.Get(ctx, textID); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Errorf("Encode stored a chunk: %v", err)
	}

	// LevelNone stores everything raw.
	idx2 := chunkstore.NewMemIndex()
	s2 := newStore(t, mem.New(), idx2, chunkstore.Options{Level: chunkstore.LevelNone})
	id := mustPut(t, s2, zeros)
	mustFlush(t, s2)
	found, _ = idx2.Lookup(ctx, []chunk.ID{id})
	if found[id].Compression != chunkstore.CompressionNone {
		t.Errorf("LevelNone compressed a chunk")
	}
	checkGet(t, s2, id, zeros)
}

func TestConcurrentPut(t *testing.T) {
	ctx := context.Background()
	blobs := mem.New()
	s := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{PackSize: 256 << 10})
	const (
		workers = 8
		per     = 60
		pool    = 200 // distinct contents; workers overlap
	)
	content := func(i int) []byte {
		if i%2 == 0 {
			return textData(uint64(i), 16<<10)
		}
		return randomData(uint64(i), 16<<10)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		distinct = map[int]bool{}
	)
	errc := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 0))
			for range per {
				i := r.IntN(pool)
				mu.Lock()
				distinct[i] = true
				mu.Unlock()
				d := content(i)
				id, err := s.Put(ctx, d)
				if err != nil {
					errc <- err
					return
				}
				got, err := s.Get(ctx, id)
				if err != nil || !bytes.Equal(got, d) {
					errc <- fmt.Errorf("Get after Put of content %d: %v", i, err)
					return
				}
				if r.IntN(20) == 0 {
					if err := s.Flush(ctx); err != nil {
						errc <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	mustFlush(t, s)
	for i := range distinct {
		checkGet(t, s, chunk.Hash(content(i)), content(i))
	}
	st := stats(t, s)
	if st.Chunks != int64(len(distinct)) || st.PendingChunks != 0 {
		t.Errorf("Stats = %+v, want %d chunks", st, len(distinct))
	}
	mustVerify(t, s)
}

// TestFlushDurability reopens a new Store over the same directory and index.
// TestFlushDurability: chunks Put before a Flush are readable by another
// Store over the same directory, packs were sealed on the way, and the
// Flush leaves the Store holding no pack buffers.
func TestFlushDurability(t *testing.T) {
	dir := t.TempDir()
	blobs, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx := chunkstore.NewMemIndex()
	s := newStore(t, blobs, idx, chunkstore.Options{PackSize: 128 << 10})
	var ids []chunk.ID
	var datas [][]byte
	for i := range 40 {
		d := randomData(uint64(i), 10<<10+i)
		datas = append(datas, d)
		ids = append(ids, mustPut(t, s, d))
	}
	if n := s.PackBuffers(); n < 2 {
		t.Errorf("%d pack buffers before the Flush, want the open one and one kept for reuse", n)
	}
	mustFlush(t, s)
	// An idle Store holds no pack memory.
	if n := s.PackBuffers(); n != 0 {
		t.Errorf("%d pack buffers held after Flush", n)
	}
	blobs2, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s2 := newStore(t, blobs2, idx, chunkstore.Options{})
	for i, id := range ids {
		checkGet(t, s2, id, datas[i])
	}
	if n := countPacks(t, blobs2); n < 2 {
		t.Errorf("%d packs, want automatic sealing to have made several", n)
	}
	mustVerify(t, s2)
}

func TestRebuildIndex(t *testing.T) {
	ctx := context.Background()
	blobs := mem.New()
	idx := chunkstore.NewMemIndex()
	s := newStore(t, blobs, idx, chunkstore.Options{PackSize: 64 << 10})
	datas := map[chunk.ID][]byte{}
	for i := range 30 {
		d := textData(uint64(i), 8<<10)
		datas[mustPut(t, s, d)] = d
	}
	mustFlush(t, s)
	before := stats(t, s)

	fresh := chunkstore.NewMemIndex()
	s2 := newStore(t, blobs, fresh, chunkstore.Options{})
	if _, err := s2.Get(ctx, chunk.Hash(textData(0, 8<<10))); !errors.Is(err, chunkstore.ErrNotFound) {
		t.Fatalf("Get with an empty index: %v", err)
	}
	if err := s2.RebuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for id, d := range datas {
		checkGet(t, s2, id, d)
	}
	if after := stats(t, s2); after != before {
		t.Errorf("Stats after rebuild = %+v, before %+v", after, before)
	}
	mustVerify(t, s2)
}

// TestCorruption flips a byte inside one chunk's record in a pack file.
func TestCorruption(t *testing.T) {
	ctx := context.Background()
	blobs, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	idx := chunkstore.NewMemIndex()
	s := newStore(t, blobs, idx, chunkstore.Options{})
	var ids []chunk.ID
	datas := map[chunk.ID][]byte{}
	for i := range 10 {
		d := textData(uint64(i), 20<<10)
		if i%2 == 1 {
			d = randomData(uint64(i), 20<<10)
		}
		id := mustPut(t, s, d)
		ids = append(ids, id)
		datas[id] = d
	}
	mustFlush(t, s)
	for _, victim := range []chunk.ID{ids[3], ids[4]} { // one raw, one compressed
		e := lookupEntry(t, idx, victim)
		flipByte(t, blobs.Path(e.Pack), e.Offset+int64(e.Length)/2)
		rep, err := s.Verify(ctx, chunkstore.VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.CorruptPacks) != 1 || rep.CorruptPacks[0] != e.Pack {
			t.Errorf("CorruptPacks = %v, want [%s]", rep.CorruptPacks, e.Pack)
		}
		if len(rep.CorruptChunks) != 1 || rep.CorruptChunks[0] != victim {
			t.Errorf("CorruptChunks = %v, want [%s]", rep.CorruptChunks, victim)
		}
		if _, err := s.Get(ctx, victim); !errors.Is(err, chunkstore.ErrCorrupt) {
			t.Errorf("Get(corrupt) = %v, want ErrCorrupt", err)
		}
		vr, err := s.VerifyChunks(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(vr.CorruptChunks) != 1 || vr.CorruptChunks[0] != victim || vr.Chunks != len(ids) {
			t.Errorf("VerifyChunks: %d checked, corrupt %v, want [%s]", vr.Chunks, vr.CorruptChunks, victim.Short())
		}
		flipByte(t, blobs.Path(e.Pack), e.Offset+int64(e.Length)/2) // repair
	}
	mustVerify(t, s)
	for id, d := range datas {
		checkGet(t, s, id, d)
	}

	// A damaged trailer makes the pack corrupt but leaves the chunks
	// readable through the index; RebuildIndex reports the pack.
	e := lookupEntry(t, idx, ids[0])
	info, err := blobs.Stat(ctx, e.Pack)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, blobs.Path(e.Pack), info.Size-16-20)
	rep, err := s.Verify(ctx, chunkstore.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.CorruptPacks) != 1 || len(rep.CorruptChunks) != 0 {
		t.Errorf("damaged trailer: packs %v chunks %v, want the pack only", rep.CorruptPacks, rep.CorruptChunks)
	}
	checkGet(t, s, ids[0], datas[ids[0]])
	s2 := newStore(t, blobs, chunkstore.NewMemIndex(), chunkstore.Options{})
	if err := s2.RebuildIndex(ctx); err == nil {
		t.Errorf("RebuildIndex with a damaged trailer returned nil")
	}

	// VerifyChunks reports chunks that are not stored at all.
	vr, err := s.VerifyChunks(ctx, []chunk.ID{chunk.Hash([]byte("nope"))})
	if err != nil {
		t.Fatal(err)
	}
	if len(vr.CorruptChunks) != 1 || !errors.Is(vr.Problems[0].Err, chunkstore.ErrNotFound) {
		t.Errorf("VerifyChunks(missing) = %+v", vr)
	}
}

func lookupEntry(t *testing.T, idx chunkstore.Index, id chunk.ID) chunkstore.Entry {
	t.Helper()
	m, err := idx.Lookup(context.Background(), []chunk.ID{id})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m[id]
	if !ok {
		t.Fatalf("chunk %s not indexed", id.Short())
	}
	return e
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

var _ = filepath.Join
var _ = clock.NewFake

// TestCompressionEntropyShortcut: chunks whose samples have low byte
// entropy skip the trial compression but must still pay to be stored
// compressed; repeated high-entropy data is still found compressible only
// if its sample is, and random data is stored raw.
func TestCompressionEntropyShortcut(t *testing.T) {
	ctx := context.Background()
	idx := chunkstore.NewMemIndex()
	s := newStore(t, mem.New(), idx, chunkstore.Options{})
	// Low entropy everywhere: compressed.
	text := textData(9, 64<<10)
	// Low-entropy samples but an incompressible body: the full attempt
	// must not pay, so it is stored raw.
	tricky := randomData(10, 64<<10)
	copy(tricky[:2<<10], make([]byte, 2<<10))
	mid := len(tricky)/2 - 1<<10
	copy(tricky[mid:mid+2<<10], make([]byte, 2<<10))
	copy(tricky[len(tricky)-2<<10:], make([]byte, 2<<10))
	random := randomData(11, 64<<10)
	ids := []chunk.ID{mustPut(t, s, text), mustPut(t, s, tricky), mustPut(t, s, random)}
	mustFlush(t, s)
	found, err := idx.Lookup(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	// tricky (6 KiB of zeros in 64 KiB of random) may or may not pay;
	// what matters is that a compressed form always pays.
	for i, e := range []chunkstore.Entry{found[ids[0]], found[ids[1]], found[ids[2]]} {
		if e.Compression == chunkstore.CompressionZstd && int(e.Length) > int(e.RawLength)-int(e.RawLength)/32 {
			t.Errorf("chunk %d stored compressed without paying: %d of %d", i, e.Length, e.RawLength)
		}
	}
	if found[ids[0]].Compression != chunkstore.CompressionZstd || found[ids[2]].Compression != chunkstore.CompressionNone {
		t.Errorf("text %v, random %v", found[ids[0]].Compression, found[ids[2]].Compression)
	}
	for i, d := range [][]byte{text, tricky, random} {
		checkGet(t, s, ids[i], d)
	}
}

package blockdev

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/chunk"
	"coffer/internal/clock"
	"coffer/internal/store/memstore"
)

// memChunks is an in-memory Chunks for tests, with counters.
type memChunks struct {
	mu      sync.Mutex
	m       map[chunk.ID][]byte
	puts    atomic.Int64
	gets    atomic.Int64
	flushes atomic.Int64
	// failFlush makes Flush fail (errInjected), as a pack write that
	// failed or was cancelled does.
	failFlush atomic.Bool
}

func newMemChunks() *memChunks { return &memChunks{m: map[chunk.ID][]byte{}} }

func (c *memChunks) Put(ctx context.Context, data []byte) (chunk.ID, error) {
	c.puts.Add(1)
	id := chunk.Hash(data)
	c.mu.Lock()
	if _, ok := c.m[id]; !ok {
		c.m[id] = bytes.Clone(data)
	}
	c.mu.Unlock()
	return id, nil
}

func (c *memChunks) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	c.gets.Add(1)
	c.mu.Lock()
	d, ok := c.m[id]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", id.Short(), blobstore.ErrNotFound)
	}
	if chunk.Hash(d) != id {
		return nil, fmt.Errorf("chunk %s: hash mismatch", id.Short())
	}
	return bytes.Clone(d), nil
}

func (c *memChunks) Flush(ctx context.Context) error {
	c.flushes.Add(1)
	if c.failFlush.Load() {
		return errInjected
	}
	return nil
}

func (c *memChunks) corrupt(id chunk.ID) {
	c.mu.Lock()
	c.m[id] = append(bytes.Clone(c.m[id]), 1)
	c.mu.Unlock()
}

// memBlobs is a map-backed blobstore.Store for tests.
type memBlobs struct {
	mu   sync.Mutex
	m    map[string][]byte
	puts map[string]int // Puts of each name
}

func newMemBlobs() *memBlobs { return &memBlobs{m: map[string][]byte{}} }

func (b *memBlobs) Put(ctx context.Context, name string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[name] = bytes.Clone(data)
	if b.puts == nil {
		b.puts = map[string]int{}
	}
	b.puts[name]++
	return nil
}

// putsOf is how many times name was Put.
func (b *memBlobs) putsOf(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.puts[name]
}

func (b *memBlobs) Get(ctx context.Context, name string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.m[name]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", name, blobstore.ErrNotFound)
	}
	return bytes.Clone(d), nil
}

func (b *memBlobs) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	d, err := b.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if off+n > int64(len(d)) {
		return nil, errors.New("short object")
	}
	return d[off : off+n], nil
}

func (b *memBlobs) Stat(ctx context.Context, name string) (blobstore.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.m[name]
	if !ok {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", name, blobstore.ErrNotFound)
	}
	return blobstore.Info{Name: name, Size: int64(len(d))}, nil
}

func (b *memBlobs) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	b.mu.Lock()
	var names []string
	for n := range b.m {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	b.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		info, err := b.Stat(ctx, n)
		if err != nil {
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (b *memBlobs) Delete(ctx context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[name]; !ok {
		return fmt.Errorf("delete %s: %w", name, blobstore.ErrNotFound)
	}
	delete(b.m, name)
	return nil
}

var _ blobstore.Store = (*memBlobs)(nil)

// dirChunks is a Chunks that survives a process kill: Put keeps chunks in
// memory, Flush writes them as files (so a kill loses unflushed chunks, as
// with a real pack store).
type dirChunks struct {
	dir     string
	mu      sync.Mutex
	pending map[chunk.ID][]byte
}

func newDirChunks(dir string) *dirChunks {
	_ = os.MkdirAll(dir, 0o700)
	return &dirChunks{dir: dir, pending: map[chunk.ID][]byte{}}
}

func (c *dirChunks) Put(ctx context.Context, data []byte) (chunk.ID, error) {
	id := chunk.Hash(data)
	c.mu.Lock()
	c.pending[id] = bytes.Clone(data)
	c.mu.Unlock()
	return id, nil
}

func (c *dirChunks) Get(ctx context.Context, id chunk.ID) ([]byte, error) {
	c.mu.Lock()
	d, ok := c.pending[id]
	c.mu.Unlock()
	if ok {
		return bytes.Clone(d), nil
	}
	d, err := os.ReadFile(filepath.Join(c.dir, id.String()))
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id.Short(), err)
	}
	return d, nil
}

func (c *dirChunks) Flush(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, d := range c.pending {
		if err := writeFileAtomic(filepath.Join(c.dir, id.String()), d); err != nil {
			return err
		}
		delete(c.pending, id)
	}
	return nil
}

// dirBlobs is a file-backed blobstore.Store for the crash test.
type dirBlobs struct {
	memBlobs
	dir string
}

func newDirBlobs(dir string) *dirBlobs {
	_ = os.MkdirAll(dir, 0o700)
	b := &dirBlobs{memBlobs: memBlobs{m: map[string][]byte{}}}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		d, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err == nil {
			b.m[strings.ReplaceAll(e.Name(), "__", "/")] = d
		}
	}
	b.dir = dir
	return b
}

func (b *dirBlobs) path(name string) string {
	return filepath.Join(b.dir, strings.ReplaceAll(name, "/", "__"))
}

func (b *dirBlobs) Put(ctx context.Context, name string, data []byte) error {
	if err := writeFileAtomic(b.path(name), data); err != nil {
		return err
	}
	return b.memBlobs.Put(ctx, name, data)
}

func (b *dirBlobs) Delete(ctx context.Context, name string) error {
	_ = os.Remove(b.path(name))
	return b.memBlobs.Delete(ctx, name)
}

// testEngine opens an engine over in-memory stores.
type testEnv struct {
	e      *Engine
	chunks *memChunks
	blobs  *memBlobs
	dir    string
	clk    *clock.Fake
}

func newTestEnv(t testing.TB, opts Options) *testEnv {
	t.Helper()
	env := &testEnv{chunks: newMemChunks(), blobs: newMemBlobs(), dir: t.TempDir(),
		clk: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	if opts.Clock == nil {
		opts.Clock = env.clk
	}
	if opts.Catalogue == nil {
		opts.Catalogue = memstore.New()
	}
	e, err := Open(context.Background(), env.dir, env.chunks, env.blobs, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	env.e = e
	t.Cleanup(func() { e.Close() })
	return env
}

// writerAtBuf is an in-memory io.WriterAt.
type writerAtBuf struct{ b []byte }

func (w *writerAtBuf) WriteAt(p []byte, off int64) (int, error) {
	copy(w.b[off:], p)
	return len(p), nil
}

type reader interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
}

// image reads the whole of r.
func image(t testing.TB, r reader) []byte {
	t.Helper()
	b := make([]byte, r.Size())
	if _, err := r.ReadAt(b, 0); err != nil {
		t.Fatalf("read image: %v", err)
	}
	return b
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }

// randomWrite writes a random-length, random-offset, partly compressible
// buffer to v and mirrors it into model (if non-nil).
func randomWrite(t testing.TB, rng *rand.Rand, v *Volume, model []byte) {
	t.Helper()
	size := v.Size()
	n := 1 + rng.Int64N(3*v.BlockSize())
	off := rng.Int64N(size)
	if off+n > size {
		n = size - off
	}
	randomWriteAt(t, rng, v, model, off, n)
}

// randomWriteAt writes n random bytes at off of v and of model (if
// non-nil).
func randomWriteAt(t testing.TB, rng *rand.Rand, v *Volume, model []byte, off, n int64) {
	t.Helper()
	p := make([]byte, n)
	fillRandom(rng, p)
	if _, err := v.WriteAt(p, off); err != nil {
		t.Fatalf("WriteAt(%d, %d): %v", off, n, err)
	}
	if model != nil {
		copy(model[off:], p)
	}
}

// volumeOf creates volume id in env holding model (its size).
func volumeOf(t testing.TB, env *testEnv, id string, model []byte) *Volume {
	t.Helper()
	v, err := env.e.CreateVolume(context.Background(), id, int64(len(model)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(model, 0); err != nil {
		t.Fatal(err)
	}
	return v
}

func fillRandom(rng *rand.Rand, p []byte) {
	switch rng.IntN(3) {
	case 0: // incompressible
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
	case 1: // text-like
		for i := range p {
			p[i] = "abcdefgh \n"[rng.IntN(10)]
		}
	default: // a repeated byte (may be zero)
		c := byte(rng.IntN(3))
		for i := range p {
			p[i] = c
		}
	}
}

// checkSnapshot restores snapshot id in every way and compares with want.
func checkSnapshot(t *testing.T, env *testEnv, id string, want []byte) {
	t.Helper()
	ctx := context.Background()
	r, err := env.e.OpenSnapshot(ctx, id)
	if err != nil {
		t.Fatalf("OpenSnapshot(%s): %v", id, err)
	}
	if got := image(t, r); sum(got) != sum(want) {
		t.Fatalf("snapshot %s via reader: contents differ from the image at its instant (first diff at %d)", id, firstDiff(got, want))
	}
	w := &writerAtBuf{b: make([]byte, len(want))}
	if err := env.e.RestoreTo(ctx, id, w); err != nil {
		t.Fatalf("RestoreTo(%s): %v", id, err)
	}
	if sum(w.b) != sum(want) {
		t.Fatalf("snapshot %s via RestoreTo: differs at %d", id, firstDiff(w.b, want))
	}
	path := filepath.Join(t.TempDir(), "restore.img")
	if err := env.e.RestoreToFile(ctx, id, path); err != nil {
		t.Fatalf("RestoreToFile(%s): %v", id, err)
	}
	fb, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum(fb) != sum(want) {
		t.Fatalf("snapshot %s via RestoreToFile: differs at %d", id, firstDiff(fb, want))
	}
	nv := "restored-" + id
	v, err := env.e.RestoreVolume(ctx, id, nv)
	if err != nil {
		t.Fatalf("RestoreVolume(%s): %v", id, err)
	}
	if got := image(t, v); sum(got) != sum(want) {
		t.Fatalf("snapshot %s via instant restore (reads during hydration): differs at %d", id, firstDiff(got, want))
	}
	if err := v.WaitHydrated(ctx); err != nil {
		t.Fatalf("WaitHydrated: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	fb, err = os.ReadFile(filepath.Join(env.e.volDir(nv), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if sum(fb) != sum(want) {
		t.Fatalf("snapshot %s: hydrated volume file differs at %d", id, firstDiff(fb, want))
	}
	if err := env.e.DeleteVolume(ctx, nv); err != nil {
		t.Fatalf("DeleteVolume: %v", err)
	}
}

// wantImage fails the test unless r reads as want, saying what was read
// (when) and where it first differs.
func wantImage(t testing.TB, r reader, want []byte, when string) {
	t.Helper()
	if got := image(t, r); !bytes.Equal(got, want) {
		t.Fatalf("%s: differs at %d", when, firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	if len(a) != len(b) {
		return -len(a)
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// swapGate holds a volume's writers at a snapshot's swap: writers take it
// shared around each write; at the swap it is held exclusively (waiting
// for writes in progress, holding new ones) while the volume's image is
// captured, so each snapshot must equal its captured image.
type swapGate struct {
	sync.RWMutex
	captured []byte // the volume at the last swap
}

// captureAtSwap installs a swapGate on env's snapshots of v.
func captureAtSwap(t testing.TB, env *testEnv, v *Volume) *swapGate {
	g := &swapGate{}
	env.e.hooks.beforeSwap = func(string) {
		g.Lock()
		g.captured = image(t, v)
	}
	env.e.hooks.afterSwap = func(string) { g.Unlock() }
	return g
}

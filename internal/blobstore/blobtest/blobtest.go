// Package blobtest is the conformance suite that every blobstore.Store
// implementation runs: atomic replace, read-after-write, not-found errors,
// ranged reads (to the last byte of large objects, into caller buffers),
// ordered prefix listing (across more than one page of an S3 listing),
// deletion, name checks, cancelled contexts and concurrent use.
package blobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"coffer/internal/blobstore"
)

// Factory returns a new, empty store for one subtest.
type Factory func(t *testing.T) blobstore.Store

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(*testing.T, blobstore.Store)
	}{
		{"PutGet", testPutGet},
		{"Replace", testReplace},
		{"NotFound", testNotFound},
		{"Range", testRange},
		{"List", testList},
		{"Delete", testDelete},
		{"Empty", testEmpty},
		{"CallerBuffers", testCallerBuffers},
		{"Concurrent", testConcurrent},
		{"Large", testLarge},
		{"ReadRange", testReadRange},
		{"ConcurrentPuts", testConcurrentPuts},
		{"Many", testMany},
		{"InvalidNames", testInvalidNames},
		{"Canceled", testCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustPut(t *testing.T, s blobstore.Store, name string, data []byte) {
	t.Helper()
	if err := s.Put(context.Background(), name, data); err != nil {
		t.Fatalf("Put(%s): %v", name, err)
	}
}

func mustGet(t *testing.T, s blobstore.Store, name string) []byte {
	t.Helper()
	b, err := s.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	return b
}

func testPutGet(t *testing.T, s blobstore.Store) {
	r := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	for _, size := range []int{1, 100, 4096, 1 << 20} {
		name := fmt.Sprintf("obj/size-%d", size)
		data := randBytes(r, size)
		mustPut(t, s, name, data)
		if got := mustGet(t, s, name); !bytes.Equal(got, data) {
			t.Fatalf("Get(%s) returned %d bytes, want the %d put", name, len(got), size)
		}
		info, err := s.Stat(ctx, name)
		if err != nil {
			t.Fatalf("Stat(%s): %v", name, err)
		}
		if info.Name != name || info.Size != int64(size) {
			t.Fatalf("Stat(%s) = %+v, want size %d", name, info, size)
		}
	}
}

func testReplace(t *testing.T, s blobstore.Store) {
	mustPut(t, s, "a/x", []byte("first version, longer"))
	mustPut(t, s, "a/x", []byte("second"))
	if got := mustGet(t, s, "a/x"); string(got) != "second" {
		t.Fatalf("after replace Get = %q, want %q", got, "second")
	}
	n := 0
	if err := s.List(context.Background(), "a/", func(blobstore.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("after replace List found %d objects, want 1", n)
	}
}

func testNotFound(t *testing.T, s blobstore.Store) {
	mustPut(t, s, "present/x", []byte("x"))
	for _, name := range []string{"missing", "present/y", "present"} {
		wantErrors(t, s, name, blobstore.ErrNotFound)
	}
}

// wantErrors checks that Get, GetRange, ReadRange, Stat and Delete of name
// fail with want.
func wantErrors(t *testing.T, s blobstore.Store, name string, want error) {
	t.Helper()
	ctx := context.Background()
	check := func(op string, err error) {
		if !errors.Is(err, want) {
			t.Errorf("%s(%q) error = %v, want %v", op, name, err, want)
		}
	}
	_, err := s.Get(ctx, name)
	check("Get", err)
	_, err = s.GetRange(ctx, name, 0, 1)
	check("GetRange", err)
	_, err = blobstore.ReadRange(ctx, s, name, 0, 1, make([]byte, 10))
	check("ReadRange", err)
	_, err = s.Stat(ctx, name)
	check("Stat", err)
	check("Delete", s.Delete(ctx, name))
}

func testRange(t *testing.T, s blobstore.Store) {
	ctx := context.Background()
	data := randBytes(rand.New(rand.NewPCG(3, 4)), 10000)
	mustPut(t, s, "r", data)
	for _, c := range []struct{ off, n int64 }{{0, 0}, {0, 1}, {0, 10000}, {9999, 1}, {1234, 5678}, {10000, 0}} {
		got, err := s.GetRange(ctx, "r", c.off, c.n)
		if err != nil {
			t.Fatalf("GetRange(%d,%d): %v", c.off, c.n, err)
		}
		if !bytes.Equal(got, data[c.off:c.off+c.n]) {
			t.Fatalf("GetRange(%d,%d) returned wrong bytes", c.off, c.n)
		}
	}
	for _, c := range []struct{ off, n int64 }{{0, 10001}, {9999, 2}, {10001, 0}, {-1, 1}, {0, -1}} {
		if got, err := s.GetRange(ctx, "r", c.off, c.n); err == nil {
			t.Errorf("GetRange(%d,%d) = %d bytes, want an error", c.off, c.n, len(got))
		} else if errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("GetRange(%d,%d) out of range error %v must not be ErrNotFound", c.off, c.n, err)
		}
	}
}

func list(t *testing.T, s blobstore.Store, prefix string) []string {
	t.Helper()
	var names []string
	err := s.List(context.Background(), prefix, func(in blobstore.Info) error {
		names = append(names, in.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return names
}

func testList(t *testing.T, s blobstore.Store) {
	names := []string{"p/b", "p/a/2", "p/a/1", "p/a-z", "p/ab", "q/1", "pz", "p/A"}
	for _, n := range names {
		mustPut(t, s, n, []byte(n))
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"p/A", "p/a-z", "p/a/1", "p/a/2", "p/ab", "p/b", "pz", "q/1"}},
		{"p/", []string{"p/A", "p/a-z", "p/a/1", "p/a/2", "p/ab", "p/b"}},
		{"p/a", []string{"p/a-z", "p/a/1", "p/a/2", "p/ab"}},
		{"p/a/", []string{"p/a/1", "p/a/2"}},
		{"p", []string{"p/A", "p/a-z", "p/a/1", "p/a/2", "p/ab", "p/b", "pz"}},
		{"none/", nil},
		{"q/1", []string{"q/1"}},
	}
	for _, c := range cases {
		got := list(t, s, c.prefix)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("List(%q) = %v, want %v", c.prefix, got, c.want)
		}
	}
	// Sizes are reported, and an error from fn stops the listing.
	stop := errors.New("stop")
	n := 0
	err := s.List(context.Background(), "p/", func(in blobstore.Info) error {
		if in.Size != int64(len(in.Name)) {
			t.Errorf("List: %s size %d, want %d", in.Name, in.Size, len(in.Name))
		}
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("List with failing fn: err %v after %d calls, want stop after 2", err, n)
	}
}

func testDelete(t *testing.T, s blobstore.Store) {
	ctx := context.Background()
	mustPut(t, s, "d/1", []byte("1"))
	mustPut(t, s, "d/2", []byte("2"))
	if err := s.Delete(ctx, "d/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctx, "d/1"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if got := list(t, s, "d/"); fmt.Sprint(got) != "[d/2]" {
		t.Fatalf("List after Delete = %v", got)
	}
	mustPut(t, s, "d/1", []byte("again"))
	if got := mustGet(t, s, "d/1"); string(got) != "again" {
		t.Fatalf("re-Put after Delete: Get = %q", got)
	}
}

func testEmpty(t *testing.T, s blobstore.Store) {
	mustPut(t, s, "empty", nil)
	if got := mustGet(t, s, "empty"); len(got) != 0 {
		t.Fatalf("Get(empty) = %d bytes", len(got))
	}
	info, err := s.Stat(context.Background(), "empty")
	if err != nil || info.Size != 0 {
		t.Fatalf("Stat(empty) = %+v, %v", info, err)
	}
}

func testCallerBuffers(t *testing.T, s blobstore.Store) {
	buf := []byte("original")
	mustPut(t, s, "buf", buf)
	copy(buf, "XXXXXXXX")
	got := mustGet(t, s, "buf")
	if string(got) != "original" {
		t.Fatalf("store kept the caller's buffer: Get = %q", got)
	}
	got[0] = 'Y'
	if again := mustGet(t, s, "buf"); string(again) != "original" {
		t.Fatalf("Get returned shared memory: %q", again)
	}
}

// testConcurrent puts, replaces, reads and lists from many goroutines. A
// reader must always see one complete version of an object.
func testConcurrent(t *testing.T, s blobstore.Store) {
	ctx := context.Background()
	const (
		workers  = 8
		rounds   = 20
		size     = 8 << 10
		replaced = "shared/obj"
	)
	version := func(v int) []byte { return bytes.Repeat([]byte{byte(v)}, size) }
	mustPut(t, s, replaced, version(0))
	var wg sync.WaitGroup
	errc := make(chan error, workers*rounds*4)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				name := fmt.Sprintf("w%d/%03d", w, i)
				data := version(w*rounds + i)
				if err := s.Put(ctx, name, data); err != nil {
					errc <- err
					return
				}
				got, err := s.Get(ctx, name)
				if err != nil || !bytes.Equal(got, data) {
					errc <- fmt.Errorf("read-after-write %s: %v", name, err)
					return
				}
				if err := s.Put(ctx, replaced, version(w+1)); err != nil {
					errc <- err
					return
				}
				got, err = s.Get(ctx, replaced)
				if err != nil {
					errc <- err
					return
				}
				if len(got) != size || !bytes.Equal(got, version(int(got[0]))) {
					errc <- fmt.Errorf("torn read of %s", replaced)
					return
				}
				if err := s.List(ctx, "shared/", func(blobstore.Info) error { return nil }); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	for w := range workers {
		if got := list(t, s, fmt.Sprintf("w%d/", w)); len(got) != rounds {
			t.Errorf("worker %d: listed %d objects, want %d", w, len(got), rounds)
		}
	}
}

// LargeSize is the size of the suite's large object: a few MiB and not a
// multiple of any part size, so that a backend that uploads large objects
// in parts can be configured to do so for it.
const LargeSize = 12<<20 + 12345

// ManyObjects is how many objects the Many test lists: more than one page
// (1000 keys) of an S3 listing.
const ManyObjects = 1001

// fastRand fills n bytes from a seeded ChaCha8 stream.
func fastRand(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// testLarge stores an object of pack size and reads it whole and in ranges,
// up to and past its last byte.
func testLarge(t *testing.T, s blobstore.Store) {
	ctx := context.Background()
	data := fastRand(1, LargeSize)
	mustPut(t, s, "large/obj", data)
	if got := mustGet(t, s, "large/obj"); !bytes.Equal(got, data) {
		t.Fatalf("Get returned %d bytes, want the %d put", len(got), len(data))
	}
	if info, err := s.Stat(ctx, "large/obj"); err != nil || info.Size != LargeSize {
		t.Fatalf("Stat = %+v, %v; want size %d", info, err, LargeSize)
	}
	size := int64(LargeSize)
	for _, c := range []struct{ off, n int64 }{
		{size - 1, 1}, {size - 4096, 4096}, {size - (5<<20 + 7), 5<<20 + 7}, {5<<20 - 3, 6}, {size, 0}, {0, size},
	} {
		got, err := s.GetRange(ctx, "large/obj", c.off, c.n)
		if err != nil {
			t.Fatalf("GetRange(%d,%d): %v", c.off, c.n, err)
		}
		if !bytes.Equal(got, data[c.off:c.off+c.n]) {
			t.Fatalf("GetRange(%d,%d) returned wrong bytes", c.off, c.n)
		}
	}
	for _, c := range []struct{ off, n int64 }{{size - 1, 2}, {size, 1}, {size + 1, 0}, {size - 4096, 1 << 20}} {
		if got, err := s.GetRange(ctx, "large/obj", c.off, c.n); err == nil {
			t.Errorf("GetRange(%d,%d) past the end = %d bytes, want an error", c.off, c.n, len(got))
		} else if errors.Is(err, blobstore.ErrNotFound) {
			t.Errorf("GetRange(%d,%d) past the end: %v must not be ErrNotFound", c.off, c.n, err)
		}
	}
}

// testReadRange reads through blobstore.RangeReader (or GetRange where the
// store has none) into buffers too small, exactly large enough and larger
// than the range; the caller's buffer holds the result or is left alone.
func testReadRange(t *testing.T, s blobstore.Store) {
	ctx := context.Background()
	data := fastRand(2, 3<<20+17)
	mustPut(t, s, "rr", data)
	for _, c := range []struct{ off, n int64 }{{0, 100}, {1 << 20, 1 << 20}, {int64(len(data)) - 300<<10, 300 << 10}} {
		want := data[c.off : c.off+c.n]
		for _, bufLen := range []int64{0, c.n, c.n + 8192, 4 << 20} {
			buf := make([]byte, bufLen)
			got, err := blobstore.ReadRange(ctx, s, "rr", c.off, c.n, buf)
			if err != nil {
				t.Fatalf("ReadRange(%d,%d) with a %d-byte buffer: %v", c.off, c.n, bufLen, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("ReadRange(%d,%d) with a %d-byte buffer returned wrong bytes", c.off, c.n, bufLen)
			}
		}
	}
	if _, err := blobstore.ReadRange(ctx, s, "rr", int64(len(data))-1, 2, make([]byte, 10)); err == nil || errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("ReadRange past the end: %v, want an error other than ErrNotFound", err)
	}
}

// testConcurrentPuts uploads distinct objects of a MiB or more from many
// goroutines at once, as a backup's pack writers do.
func testConcurrentPuts(t *testing.T, s blobstore.Store) {
	ctx := context.Background()
	const n = 16
	objs := make([][]byte, n)
	for i := range objs {
		objs[i] = fastRand(byte(10+i), 1<<20+i*4099)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = s.Put(ctx, fmt.Sprintf("cp/%02d", i), objs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Put %d: %v", i, err)
		}
	}
	for i := range n {
		wg.Go(func() {
			got, err := s.Get(ctx, fmt.Sprintf("cp/%02d", i))
			if err == nil && !bytes.Equal(got, objs[i]) {
				err = fmt.Errorf("got %d bytes, want the %d put", len(got), len(objs[i]))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Get cp/%02d after concurrent Puts: %v", i, err)
		}
	}
	if got := list(t, s, "cp/"); len(got) != n {
		t.Errorf("List after concurrent Puts found %d objects, want %d", len(got), n)
	}
}

// testMany lists more objects than one page of an S3 listing holds, whole
// and by prefixes whose matches cross a page boundary.
func testMany(t *testing.T, s blobstore.Store) {
	ctx := context.Background()
	names := make([]string, ManyObjects)
	for i := range names {
		names[i] = fmt.Sprintf("many/%04d", i)
	}
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 8 {
		wg.Go(func() {
			for name := range work {
				if err := s.Put(ctx, name, []byte(name)); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("Put: %v", firstErr)
	}
	if got := list(t, s, "many/"); !slices.Equal(got, names) {
		t.Fatalf("List(many/) returned %d names (first %v), want %d in order", len(got), got[:min(3, len(got))], len(names))
	}
	if got := list(t, s, "many/09"); !slices.Equal(got, names[900:1000]) {
		t.Errorf("List(many/09) returned %d names, want 100", len(got))
	}
	if got := list(t, s, "many/1"); !slices.Equal(got, names[1000:]) {
		t.Errorf("List(many/1) = %v, want %v", got, names[1000:])
	}
	// The caller's fn may stop a listing past the first page.
	stop := errors.New("stop")
	var seen []string
	err := s.List(ctx, "many/", func(in blobstore.Info) error {
		if in.Size != int64(len(in.Name)) {
			return fmt.Errorf("%s: size %d, want %d", in.Name, in.Size, len(in.Name))
		}
		seen = append(seen, in.Name)
		if len(seen) == ManyObjects-1 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(seen, names[:ManyObjects-1]) {
		t.Errorf("List stopped by fn after %d names: %v", len(seen), err)
	}
}

// testInvalidNames checks that names outside the contract are refused with
// blobstore.ErrInvalidName and nothing is stored.
func testInvalidNames(t *testing.T, s blobstore.Store) {
	ctx := context.Background()
	for _, name := range []string{"", "../x", "a//b", "a/./b", "/abs", "a/", "sp ace", "a\\b", "a/../b", "ü"} {
		if err := s.Put(ctx, name, []byte("x")); !errors.Is(err, blobstore.ErrInvalidName) {
			t.Errorf("Put(%q) = %v, want ErrInvalidName", name, err)
		}
		wantErrors(t, s, name, blobstore.ErrInvalidName)
	}
	if got := list(t, s, ""); len(got) != 0 {
		t.Errorf("invalid names stored objects: %v", got)
	}
}

// testCanceled checks that calls with a cancelled context fail with its
// error and change nothing.
func testCanceled(t *testing.T, s blobstore.Store) {
	mustPut(t, s, "c/present", []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "c/new", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, "c/present"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context = %v, want context.Canceled", err)
	}
	if err := s.List(ctx, "c/", func(blobstore.Info) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context = %v, want context.Canceled", err)
	}
	if got := list(t, s, "c/"); !slices.Equal(got, []string{"c/present"}) {
		t.Errorf("after cancelled calls List = %v, want [c/present]", got)
	}
}

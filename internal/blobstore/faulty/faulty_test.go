package faulty_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/blobtest"
	"coffer/internal/blobstore/faulty"
	"coffer/internal/blobstore/mem"
)

// With no faults the wrapper is a conforming store.
func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return faulty.New(mem.New()) })
}

func TestNthPutFails(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	s := faulty.New(inner)
	s.Inject(faulty.Fault{Op: faulty.OpPut, Nth: 3})
	for i := 1; i <= 5; i++ {
		err := s.Put(ctx, fmt.Sprint("o", i), []byte("x"))
		if (i == 3) != (err != nil) {
			t.Errorf("Put #%d: err = %v", i, err)
		}
		if i == 3 && !errors.Is(err, faulty.ErrInjected) {
			t.Errorf("Put #3: err = %v, want ErrInjected", err)
		}
	}
	if _, err := inner.Get(ctx, "o3"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("failed Put stored the object: %v", err)
	}
	if got := s.Count(faulty.OpPut); got != 5 {
		t.Errorf("Count(put) = %d, want 5", got)
	}
	if got := s.Failures(faulty.OpPut); got != 1 {
		t.Errorf("Failures(put) = %d, want 1", got)
	}
}

func TestStickyAndPrefix(t *testing.T) {
	ctx := context.Background()
	s := faulty.New(mem.New())
	s.Inject(faulty.Fault{Op: faulty.OpPut, Nth: 2, Sticky: true, Prefix: "packs/"})
	want := map[string]bool{"packs/1": false, "other": false, "packs/2": true, "packs/3": true, "x": false}
	for _, name := range []string{"packs/1", "other", "packs/2", "packs/3", "x"} {
		err := s.Put(ctx, name, []byte("x"))
		if (err != nil) != want[name] {
			t.Errorf("Put(%s) err = %v, want failure %v", name, err, want[name])
		}
	}
	s.Reset()
	if err := s.Put(ctx, "packs/4", nil); err != nil {
		t.Errorf("after Reset: %v", err)
	}
}

func TestTruncate(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	s := faulty.New(inner)
	s.Inject(faulty.Fault{Op: faulty.OpPut, Nth: 1, Truncate: true})
	s.Inject(faulty.Fault{Op: faulty.OpPut, Nth: 2, Truncate: true, Silent: true})
	if err := s.Put(ctx, "a", make([]byte, 100)); err == nil {
		t.Error("torn Put returned nil")
	}
	if err := s.Put(ctx, "b", make([]byte, 100)); err != nil {
		t.Errorf("silent torn Put: %v", err)
	}
	for _, n := range []string{"a", "b"} {
		if info, err := inner.Stat(ctx, n); err != nil || info.Size != 50 {
			t.Errorf("%s: %+v %v, want 50 bytes stored", n, info, err)
		}
	}
}

func TestNoSpaceIsPermanent(t *testing.T) {
	s := faulty.New(mem.New())
	s.Inject(faulty.Fault{Op: faulty.OpPut, Err: faulty.ErrNoSpace()})
	err := s.Put(context.Background(), "a", nil)
	var p interface{ Permanent() bool }
	if !errors.Is(err, syscall.ENOSPC) || !errors.As(err, &p) || !p.Permanent() {
		t.Errorf("err = %v, want permanent ENOSPC", err)
	}
}

func TestReadFaults(t *testing.T) {
	ctx := context.Background()
	s := faulty.New(mem.New())
	if err := s.Put(ctx, "a", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	s.Inject(faulty.Fault{Op: faulty.OpGet})
	if _, err := s.Get(ctx, "a"); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("Get: %v", err)
	}
	if _, err := s.GetRange(ctx, "a", 0, 1); !errors.Is(err, faulty.ErrInjected) {
		t.Errorf("GetRange: %v", err)
	}
	if _, err := s.Stat(ctx, "a"); err != nil {
		t.Errorf("Stat is not a read fault target: %v", err)
	}
}

package blockdev

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHydrationYield checks yieldTo: without recent foreground I/O every
// job starts at once; within hydrateYieldWindow of it, one job runs at a
// time (a second waits for the first to end, or for its context); after
// the window, jobs start at once again.
func TestHydrationYield(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	h := &hydration{yield: make(chan struct{}, 1)}

	// No foreground I/O yet: both start, neither waits.
	d1, err := h.yieldTo(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := h.yieldTo(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	d1()
	d2()

	h.touch(t0)
	now := t0.Add(hydrateYieldWindow - time.Millisecond)
	first, err := h.yieldTo(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan func(), 1)
	go func() {
		d, err := h.yieldTo(ctx, now)
		if err != nil {
			t.Error(err)
		}
		started <- d
	}()
	select {
	case <-started:
		t.Fatal("a second job started while foreground I/O was recent and another job ran")
	case <-time.After(50 * time.Millisecond): // it waits (a broken gate lets it through at once)
	}
	first()
	second := <-started // and starts when the first ends
	if second == nil {
		t.Fatal("second job got no done function")
	}

	// While it runs, a waiting job gives up with its context.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.yieldTo(cctx, now); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v, want context.Canceled", err)
	}

	// The window has passed: jobs start at once even while another runs.
	d3, err := h.yieldTo(ctx, t0.Add(hydrateYieldWindow))
	if err != nil {
		t.Fatal(err)
	}
	d3()
	second()
}

// TestHydrationUnderForegroundReads restores a volume while a reader reads
// random blocks of it without pause, checking each against the snapshot:
// the test env's clock does not move, so after the first read the hydrator
// yields for good and runs one job at a time. Hydration must still end,
// and the volume must equal the snapshot.
func TestHydrationUnderForegroundReads(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	const size = 16 << 20 // 16 index pages of 4 KiB blocks: 16 hydration jobs
	src, err := env.e.CreateVolume(ctx, "src", size)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, size)
	applyWrites(t, src, genWrites(31, 600, size, 16<<10), model)
	if _, err := env.e.Snapshot(ctx, "src", "s"); err != nil {
		t.Fatal(err)
	}
	snap := slices.Clone(model)

	// The hydrator starts its jobs once the reader has read once.
	firstRead := make(chan struct{})
	env.e.hooks.hydrator = func(ctx context.Context, vol string) {
		select {
		case <-firstRead:
		case <-ctx.Done():
		}
	}
	v, err := env.e.RestoreVolume(ctx, "s", "dst")
	if err != nil {
		t.Fatal(err)
	}
	stop, readErr := make(chan struct{}), make(chan error, 1)
	reads := 0
	go func() {
		rng := rand.New(rand.NewPCG(3, 4))
		buf := make([]byte, 4<<10)
		for {
			select {
			case <-stop:
				readErr <- nil
				return
			default:
			}
			off := rng.Int64N(size/int64(len(buf))) * int64(len(buf))
			if _, err := v.ReadAt(buf, off); err != nil {
				readErr <- err
				return
			}
			if !bytes.Equal(buf, snap[off:off+int64(len(buf))]) {
				readErr <- errors.New("a read during hydration differs from the snapshot")
				return
			}
			if reads++; reads == 1 {
				close(firstRead)
			}
		}
	}()
	werr := v.WaitHydrated(ctx)
	close(stop)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	if got := image(t, v); !bytes.Equal(got, snap) {
		t.Fatalf("hydrated volume differs from the snapshot at %d", firstDiff(got, snap))
	}
}

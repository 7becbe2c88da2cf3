package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/blobtest"
	"coffer/internal/blobstore/faulty"
	"coffer/internal/blobstore/mem"
	"coffer/internal/blobstore/metrics"
	"coffer/internal/clock"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return metrics.New(mem.New(), nil) })
}

// slow is a store whose Puts take two seconds of a fake clock.
type slow struct {
	blobstore.Store
	clk *clock.Fake
}

func (s slow) Put(ctx context.Context, name string, data []byte) error {
	s.clk.Advance(2 * time.Second)
	return s.Store.Put(ctx, name, data)
}

func TestCountsAndWrites(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	inner := faulty.New(slow{mem.New(), clk})
	s := metrics.New(inner, clk)
	for i := range 3 {
		if err := s.Put(ctx, fmt.Sprint("o", i), make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Get(ctx, "o1"); err != nil {
		t.Fatal(err)
	}
	if _, err := blobstore.ReadRange(ctx, s, "o2", 10, 100, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal(err)
	}
	inner.Inject(faulty.Fault{Op: faulty.OpGet, Nth: 1, Err: fmt.Errorf("%w: 503", blobstore.ErrThrottled)})
	inner.Inject(faulty.Fault{Op: faulty.OpStat, Nth: 1, Err: fmt.Errorf("%w: reset", blobstore.ErrTransient)})
	s.GetRange(ctx, "o1", 0, 1)
	s.Stat(ctx, "o1")
	if got := s.Calls(metrics.OpPut); got != 3 {
		t.Errorf("Calls(put) = %d", got)
	}
	if got := s.Errors(metrics.OpGet, metrics.ClassNotFound); got != 1 {
		t.Errorf("Errors(get, not_found) = %d", got)
	}
	if read, written := s.Bytes(); read != 1100 || written != 3000 {
		t.Errorf("Bytes = %d read, %d written; want 1100, 3000", read, written)
	}
	var b strings.Builder
	s.WriteMetrics(&b)
	out := b.String()
	for _, want := range []string{
		"# TYPE coffer_blob_operations_total counter\n",
		`coffer_blob_operations_total{op="put"} 3` + "\n",
		`coffer_blob_operations_total{op="get"} 2` + "\n",
		`coffer_blob_operations_total{op="get_range"} 2` + "\n",
		`coffer_blob_errors_total{op="get",class="not_found"} 1` + "\n",
		`coffer_blob_errors_total{op="get_range",class="throttled"} 1` + "\n",
		`coffer_blob_errors_total{op="stat",class="transient"} 1` + "\n",
		"coffer_blob_read_bytes_total 1100\n",
		"coffer_blob_written_bytes_total 3000\n",
		"# TYPE coffer_blob_operation_duration_seconds histogram\n",
		`coffer_blob_operation_duration_seconds_bucket{op="put",le="1"} 0` + "\n",
		`coffer_blob_operation_duration_seconds_bucket{op="put",le="2.5"} 3` + "\n",
		`coffer_blob_operation_duration_seconds_bucket{op="put",le="+Inf"} 3` + "\n",
		`coffer_blob_operation_duration_seconds_sum{op="put"} 6` + "\n",
		`coffer_blob_operation_duration_seconds_count{op="get"} 2` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want metrics.Class
	}{
		{fmt.Errorf("get x: %w", blobstore.ErrNotFound), metrics.ClassNotFound},
		{fmt.Errorf("%w: SlowDown", blobstore.ErrThrottled), metrics.ClassThrottled},
		{fmt.Errorf("%w: reset", blobstore.ErrTransient), metrics.ClassTransient},
		{fmt.Errorf("%w (while waiting: %w)", context.Canceled, blobstore.ErrThrottled), metrics.ClassCanceled},
		{errors.New("denied"), metrics.ClassOther},
	} {
		if got := metrics.Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

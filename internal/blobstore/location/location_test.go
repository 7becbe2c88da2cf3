package location_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/blobtest"
	"coffer/internal/blobstore/limit"
	"coffer/internal/blobstore/local"
	"coffer/internal/blobstore/location"
	"coffer/internal/blobstore/mem"
	"coffer/internal/blobstore/metrics"
	"coffer/internal/blobstore/retry"
	"coffer/internal/blobstore/s3"
	"coffer/internal/blobstore/s3/s3test"
)

// fastRetry keeps the tests' waits short.
var fastRetry = retry.Options{Base: time.Millisecond, Max: 20 * time.Millisecond}

func TestConformanceLocal(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store {
		s, err := location.Open(context.Background(), filepath.Join(t.TempDir(), "chunks"), location.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestConformanceMem(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return location.Wrap(mem.New(), location.Options{}) })
}

// The decorators keep the local store's direct reads into the caller's
// buffer (blobstore.RangeReader) reachable.
func TestLocalRangeReaderKept(t *testing.T) {
	ctx := context.Background()
	s, err := location.Open(ctx, "file://"+t.TempDir(), location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Backend.(*local.Store); !ok {
		t.Fatalf("file:// opened a %T", s.Backend)
	}
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(i)
	}
	if err := s.Put(ctx, "x", data); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1000)
	got, err := s.ReadRange(ctx, "x", 100, 500, buf)
	if err != nil || !slices.Equal(got, data[100:600]) {
		t.Fatalf("ReadRange = %v", err)
	}
	if &got[0] != &buf[0] {
		t.Error("ReadRange through the decorators did not use the caller's buffer")
	}
}

func TestBadLocations(t *testing.T) {
	for _, loc := range []string{"", "ftp://host/x", "s3://", "s3:///prefix", "file://host/x", "s3://b/p?x=1", "s3://user@b/p"} {
		_, err := location.Open(context.Background(), loc, location.Options{})
		if !errors.Is(err, location.ErrLocation) {
			t.Errorf("Open(%q) = %v, want ErrLocation", loc, err)
		}
	}
	// A path that cannot be a directory.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := location.Open(context.Background(), filepath.Join(file, "sub"), location.Options{}); err == nil {
		t.Error("Open under a regular file succeeded")
	}
}

// s3Options points an s3:// location at a server through endpoint.
func s3Options(srv *s3test.Server, endpoint string) location.Options {
	return location.Options{
		S3: s3.Options{Endpoint: endpoint, PathStyle: true, Region: s3test.Region,
			AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey,
			MultipartThreshold: 8 << 20, PartSize: s3.MinPartSize},
		Retry: fastRetry,
	}
}

// The decorated S3 store passes the suite while a proxy in front of
// versitygw answers 503 SlowDown to a tenth of the requests and drops the
// connection of one in twenty, mid-upload or mid-download.
func TestConformanceS3UnderFaults(t *testing.T) {
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	bucket := srv.NewBucket(t)
	var mu sync.Mutex
	var stores []*location.Store
	n := 0
	blobtest.Run(t, func(t *testing.T) blobstore.Store {
		n++
		proxy.SetFaults(nil) // opening checks the bucket once, without retries
		s, err := location.Open(context.Background(), fmt.Sprintf("s3://%s/run/%d", bucket, n), s3Options(srv, proxy.URL))
		if err != nil {
			t.Fatal(err)
		}
		proxy.SetFaults(s3test.Random(uint64(n), 0.10, 0.05))
		mu.Lock()
		stores = append(stores, s)
		mu.Unlock()
		return s
	})
	proxy.SetFaults(nil)
	var retries, throttled uint64
	for _, s := range stores {
		for op := range metrics.NumOps {
			retries += s.Retry.Retries(op)
		}
		th, _, _ := s.Limit.Stats()
		throttled += th
	}
	t.Logf("proxy: %d passed, %d SlowDown, %d dropped; %d retries, %d throttled calls seen by the limiter",
		proxy.Count(s3test.Pass), proxy.Count(s3test.SlowDown), proxy.Count(s3test.Drop), retries, throttled)
	if proxy.Count(s3test.SlowDown) == 0 || proxy.Count(s3test.Drop) == 0 || retries == 0 || throttled == 0 {
		t.Error("the faults were not injected or not retried")
	}
}

// The limiter halves its bound for every round of throttled calls, down to
// one, and grows back to its maximum once the server answers again.
func TestLimiterHalvesAndRecoversOnS3(t *testing.T) {
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	opts := s3Options(srv, proxy.URL)
	opts.Limit = limit.Options{Max: 8}
	ctx := context.Background()
	s, err := location.Open(ctx, "s3://"+srv.NewBucket(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	// A storm: sixteen uploads at once while the server throttles the
	// next 40 requests; each retry round halves the bound.
	proxy.SetFaults(s3test.FirstN(40, s3test.SlowDown))
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Put(ctx, fmt.Sprint("storm/", i), []byte("data")) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Put %d through the storm: %v", i, err)
		}
	}
	throttled, decreases, _ := s.Limit.Stats()
	if throttled != 40 || decreases < 3 {
		t.Errorf("limiter saw %d throttled calls and halved %d times; want 40, and at least 3 (8→4→2→1)", throttled, decreases)
	}
	t.Logf("storm: %d throttled calls, %d halvings; bound %d after it", throttled, decreases, s.Limit.Limit())
	// One call throttled four times in a row: each retry starts a new
	// round, so the bound falls to one whatever it was, and the call's
	// own success then raises it to two.
	proxy.SetFaults(s3test.FirstN(4, s3test.SlowDown))
	if err := s.Put(ctx, "storm/last", []byte("data")); err != nil {
		t.Fatal(err)
	}
	if got := s.Limit.Limit(); got != 2 {
		t.Fatalf("after a call throttled four times and answered the bound is %d, want 2", got)
	}
	// Calm: the bound grows by one per bound's worth of answers.
	var bounds []int
	for i := range 27 {
		if _, err := s.Stat(ctx, fmt.Sprint("storm/", i%16)); err != nil {
			t.Fatal(err)
		}
		bounds = append(bounds, s.Limit.Limit())
	}
	want := []int{2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 8}
	if !slices.Equal(bounds, want) {
		t.Errorf("bounds while the server recovers\n%v, want\n%v", bounds, want)
	}
	var b strings.Builder
	s.WriteMetrics(&b)
	for _, line := range []string{"coffer_blob_concurrency_limit 8\n", "coffer_blob_throttled_total 44\n",
		`coffer_blob_retries_total{op="put"} 44` + "\n", `coffer_blob_operations_total{op="put"} 17` + "\n",
		`coffer_blob_operations_total{op="stat"} 27` + "\n"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("metrics lack %q:\n%s", line, b.String())
		}
	}
}

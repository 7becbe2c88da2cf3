package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/blobtest"
	"coffer/internal/blobstore/s3"
	"coffer/internal/blobstore/s3/s3test"
)

// isolate keeps the machine's AWS configuration out of a test.
func isolate(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
		"AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent/aws/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// open opens a store on srv through endpoint with the server's
// credentials; o sets the bucket and the rest.
func open(t *testing.T, srv *s3test.Server, endpoint string, o s3.Options) *s3.Store {
	t.Helper()
	o.Endpoint, o.PathStyle, o.Region = endpoint, true, s3test.Region
	o.AccessKeyID, o.SecretAccessKey = srv.AccessKey, srv.SecretKey
	st, err := s3.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// The S3 backend passes the suite on versitygw: every subtest gets a new
// bucket, at its root or under a prefix; objects of the large test go up
// in parts.
func TestConformance(t *testing.T) {
	isolate(t)
	srv := s3test.Start(t)
	n := 0
	blobtest.Run(t, func(t *testing.T) blobstore.Store {
		n++
		prefix := ""
		if n%2 == 0 {
			prefix = "coffer/chunks"
		}
		return open(t, srv, srv.Endpoint, s3.Options{Bucket: srv.NewBucket(t), Prefix: prefix,
			MultipartThreshold: 8 << 20, PartSize: s3.MinPartSize})
	})
}

// Requests carry no checksum the server did not ask for: no CRC32
// headers or trailers, no aws-chunked bodies, no checksum mode on reads —
// whatever the environment asks for.
func TestChecksumsOnlyWhenRequired(t *testing.T) {
	isolate(t)
	t.Setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported")
	t.Setenv("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_supported")
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	st := open(t, srv, proxy.URL, s3.Options{Bucket: srv.NewBucket(t), MultipartThreshold: 6 << 20, PartSize: s3.MinPartSize})
	ctx := context.Background()
	small, large := randBytes(1, 1000), randBytes(2, 7<<20)
	if err := st.Put(ctx, "small", small); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "large", large); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(ctx, "large"); err != nil || !bytes.Equal(got, large) {
		t.Fatalf("Get(large): %d bytes, %v", len(got), err)
	}
	if got, err := st.GetRange(ctx, "small", 10, 20); err != nil || !bytes.Equal(got, small[10:30]) {
		t.Fatalf("GetRange(small): %v", err)
	}
	reqs := proxy.Requests()
	var puts int
	for _, r := range reqs {
		if r.Method == http.MethodPut {
			puts++
		}
		for h, v := range r.Header {
			h = strings.ToLower(h)
			if strings.HasPrefix(h, "x-amz-checksum-") || h == "x-amz-sdk-checksum-algorithm" || h == "x-amz-trailer" {
				t.Errorf("%s %s sent %s: %v", r.Method, r.Path, h, v)
			}
		}
		if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") ||
			strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
			t.Errorf("%s %s sent an aws-chunked body", r.Method, r.Path)
		}
	}
	if puts < 3 { // the small object, and parts of the large one
		t.Errorf("saw %d PUT requests, want at least 3", puts)
	}
}

// A ranged read moves only the bytes asked for, into the caller's buffer.
func TestRangedReadMovesOnlyTheRange(t *testing.T) {
	isolate(t)
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	st := open(t, srv, proxy.URL, s3.Options{Bucket: srv.NewBucket(t)})
	ctx := context.Background()
	data := randBytes(3, 12<<20)
	if err := st.Put(ctx, "pack", data); err != nil {
		t.Fatal(err)
	}
	before := proxy.BytesOut()
	buf := make([]byte, 1<<20+100)
	got, err := st.ReadRange(ctx, "pack", 5<<20+3, 1<<20, buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[5<<20+3:6<<20+3]) {
		t.Fatal("ReadRange returned wrong bytes")
	}
	if &got[0] != &buf[0] {
		t.Error("ReadRange did not read into the caller's buffer")
	}
	if moved := proxy.BytesOut() - before; moved != 1<<20 {
		t.Errorf("a 1 MiB ranged read moved %d bytes", moved)
	}
	before = proxy.BytesOut()
	if got, err := st.GetRange(ctx, "pack", int64(len(data))-10, 10); err != nil || !bytes.Equal(got, data[len(data)-10:]) {
		t.Fatalf("GetRange at the end: %v", err)
	}
	if moved := proxy.BytesOut() - before; moved != 10 {
		t.Errorf("a 10-byte ranged read moved %d bytes", moved)
	}
}

// The SDK's retryer has no retry token bucket: a request throttled 150
// times in a row still succeeds, where the SDK's default bucket (500
// tokens, 5 per throttled retry) gives up after 100 retries.
func TestRetryBudgetSurvivesThrottling(t *testing.T) {
	isolate(t)
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	st := open(t, srv, proxy.URL, s3.Options{Bucket: srv.NewBucket(t), MaxAttempts: 200, MaxBackoff: time.Millisecond})
	proxy.SetFaults(s3test.FirstN(150, s3test.SlowDown))
	if err := st.Put(context.Background(), "x", []byte("survived")); err != nil {
		t.Fatalf("Put through 150 SlowDown answers: %v", err)
	}
	if got := proxy.Count(s3test.SlowDown); got != 150 {
		t.Errorf("proxy answered SlowDown %d times, want 150", got)
	}
}

// Errors are classified for the decorators: throttling, transient
// failures and missing objects, never by their text.
func TestErrorClasses(t *testing.T) {
	isolate(t)
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	st := open(t, srv, proxy.URL, s3.Options{Bucket: srv.NewBucket(t), MaxAttempts: 1})
	ctx := context.Background()
	data := randBytes(4, 256<<10)
	if err := st.Put(ctx, "obj", data); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name  string
		fault s3test.Fault
		call  func() error
		want  error
	}{
		{"put throttled", s3test.SlowDown, func() error { return st.Put(ctx, "new", data) }, blobstore.ErrThrottled},
		{"stat throttled", s3test.SlowDown, func() error { _, err := st.Stat(ctx, "obj"); return err }, blobstore.ErrThrottled},
		{"put dropped mid-upload", s3test.Drop, func() error { return st.Put(ctx, "new", data) }, blobstore.ErrTransient},
		{"get dropped mid-download", s3test.Drop, func() error { _, err := st.Get(ctx, "obj"); return err }, blobstore.ErrTransient},
		{"range dropped mid-download", s3test.Drop, func() error { _, err := st.GetRange(ctx, "obj", 10, 100<<10); return err }, blobstore.ErrTransient},
		{"list dropped", s3test.Drop, func() error { return st.List(ctx, "", func(blobstore.Info) error { return nil }) }, blobstore.ErrTransient},
		{"missing", s3test.Pass, func() error { _, err := st.Get(ctx, "missing"); return err }, blobstore.ErrNotFound},
		{"missing delete", s3test.Pass, func() error { return st.Delete(ctx, "missing") }, blobstore.ErrNotFound},
	}
	for _, c := range checks {
		proxy.SetFaults(s3test.FirstN(1, c.fault))
		err := c.call()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if retry := c.want != blobstore.ErrNotFound; blobstore.Retryable(err) != retry {
			t.Errorf("%s: Retryable = %v, want %v", c.name, !retry, retry)
		}
	}
	proxy.SetFaults(nil)
	if _, err := st.Stat(ctx, "new"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("a failed Put stored the object: %v", err)
	}
}

// A multipart upload that fails is aborted: no object and no parts stay.
func TestFailedMultipartLeavesNothing(t *testing.T) {
	isolate(t)
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	bucket := srv.NewBucket(t)
	st := open(t, srv, proxy.URL, s3.Options{Bucket: bucket, MaxAttempts: 1, MultipartThreshold: 6 << 20, PartSize: s3.MinPartSize})
	proxy.SetFaults(func(r *http.Request) s3test.Fault {
		if r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2" {
			return s3test.Drop
		}
		return s3test.Pass
	})
	ctx := context.Background()
	err := st.Put(ctx, "big", randBytes(5, 11<<20))
	if !errors.Is(err, blobstore.ErrTransient) {
		t.Fatalf("Put with a dropped part: %v, want a transient error", err)
	}
	proxy.SetFaults(nil)
	if _, err := st.Stat(ctx, "big"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("after a failed multipart Put, Stat = %v, want ErrNotFound", err)
	}
	ups, err := srv.Client(srv.Endpoint).ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(ups.Uploads) != 0 {
		t.Errorf("%d multipart uploads left, want 0 (aborted)", len(ups.Uploads))
	}
}

// Endpoint, region and credentials come from the standard AWS environment
// when the options leave them out.
func TestEnvironment(t *testing.T) {
	isolate(t)
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	ctx := context.Background()
	srv.SetEnv(t)
	for _, v := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, srv.Endpoint)
			st, err := s3.Open(ctx, s3.Options{Bucket: bucket, Prefix: v, PathStyle: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Put(ctx, "x", []byte(v)); err != nil {
				t.Fatal(err)
			}
			if got, err := st.Get(ctx, "x"); err != nil || string(got) != v {
				t.Fatalf("Get = %q, %v", got, err)
			}
		})
	}
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-"+srv.SecretKey)
	_, err := s3.Open(ctx, s3.Options{Bucket: bucket, PathStyle: true})
	if err == nil {
		t.Fatal("Open with a wrong secret key succeeded")
	}
	if strings.Contains(err.Error(), srv.SecretKey) {
		t.Errorf("error names the secret key: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	isolate(t)
	srv := s3test.Start(t)
	ctx := context.Background()
	base := s3.Options{Endpoint: srv.Endpoint, PathStyle: true, Region: s3test.Region,
		AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}
	for _, c := range []struct {
		name string
		mod  func(*s3.Options)
		want string
	}{
		{"no bucket", func(o *s3.Options) {}, "no bucket"},
		{"missing bucket", func(o *s3.Options) { o.Bucket = "nonesuch" }, "does not exist"},
		{"small parts", func(o *s3.Options) { o.Bucket = "b"; o.PartSize = 1 << 20 }, "part size"},
		{"bad prefix", func(o *s3.Options) { o.Bucket = "b"; o.Prefix = "a//b" }, "prefix"},
	} {
		o := base
		c.mod(&o)
		_, err := s3.Open(ctx, o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Open error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

// gets counts the proxy's GET requests.
func gets(p *s3test.Proxy) int {
	n := 0
	for _, r := range p.Requests() {
		if r.Method == http.MethodGet {
			n++
		}
	}
	return n
}

// Ranged reads of a whole pack, 1 MiB at a time from four readers at once
// (a restore's jobs), are served by a few GETs of 8 MiB blocks
// (read-ahead) with the right bytes, up to the object's end; small reads
// here and there are each a GET of their own bytes, no more; a read past
// the end still fails; with ReadAhead < 0 every read is its own GET.
func TestReadAhead(t *testing.T) {
	isolate(t)
	srv := s3test.Start(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	bucket := srv.NewBucket(t)
	st := open(t, srv, proxy.URL, s3.Options{Bucket: bucket})
	ctx := context.Background()
	const size = 30<<20 + 12345
	data := randBytes(5, size)
	if err := st.Put(ctx, "pack", data); err != nil {
		t.Fatal(err)
	}
	const run = 1 << 20
	runs := make(chan int64, size/run+1)
	for off := int64(0); off < size; off += run {
		runs <- off
	}
	close(runs)
	g0 := gets(proxy)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, run)
			for off := range runs {
				n := min(run, size-off)
				got, err := st.ReadRange(ctx, "pack", off, n, buf)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, data[off:off+n]) {
					errs <- fmt.Errorf("wrong bytes at %d", off)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// 31 reads; the first, one per 8 MiB block and a few reads that
	// came before their block was wanted are GETs of their own.
	if n := gets(proxy) - g0; n > 12 {
		t.Errorf("31 1 MiB reads of a pack made %d GETs, want a few 8 MiB ones", n)
	} else {
		t.Logf("31 1 MiB reads of a pack from 4 readers: %d GETs", n)
	}

	// Reads far apart move only their bytes (a new store: no windows).
	st = open(t, srv, proxy.URL, s3.Options{Bucket: bucket})
	before, g0 := proxy.BytesOut(), gets(proxy)
	for _, off := range []int64{1 << 20, 9 << 20, 20 << 20, 3 << 20} {
		if got, err := st.GetRange(ctx, "pack", off+7, 4096); err != nil || !bytes.Equal(got, data[off+7:off+7+4096]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	if moved, n := proxy.BytesOut()-before, gets(proxy)-g0; moved != 4*4096 || n != 4 {
		t.Errorf("4 scattered 4 KiB reads: %d GETs moved %d bytes, want 4 of 4096", n, moved)
	}

	// Past the end, after a read near it.
	if _, err := st.GetRange(ctx, "pack", size-3000, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetRange(ctx, "pack", size-2000, 4000); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a read past the end: %v, want io.ErrUnexpectedEOF", err)
	}

	// Without read-ahead.
	plain := open(t, srv, proxy.URL, s3.Options{Bucket: bucket, ReadAhead: -1})
	g0 = gets(proxy)
	buf := make([]byte, run)
	for off := int64(0); off < 8*run; off += run {
		if _, err := plain.ReadRange(ctx, "pack", off, run, buf); err != nil {
			t.Fatal(err)
		}
	}
	if n := gets(proxy) - g0; n != 8 {
		t.Errorf("8 reads without read-ahead made %d GETs", n)
	}
}

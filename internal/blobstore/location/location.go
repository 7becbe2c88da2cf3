// Package location opens the blob store a server is configured with — a
// local directory or an S3-compatible bucket, named by a path or URL — and
// wraps it in the decorators every backend runs behind, from the outside
// in: metrics (per logical call), retry (transient errors, with backoff),
// limit (adaptive concurrency), then the backend.
//
// Locations:
//
//	/var/lib/coffer/chunks, ./chunks   a directory (blobstore/local)
//	file:///var/lib/coffer/chunks      the same, as a URL
//	s3://BUCKET                        a bucket's root (blobstore/s3)
//	s3://BUCKET/PREFIX                 the keys under PREFIX/ in a bucket
//
// For s3:// the endpoint, region, credentials and path style come from
// Options.S3 or else the standard AWS environment (AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY);
// the SDK's own retries are turned off, since the retry decorator retries
// every attempt the limiter has seen.
package location

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/limit"
	"coffer/internal/blobstore/local"
	"coffer/internal/blobstore/metrics"
	"coffer/internal/blobstore/retry"
	"coffer/internal/blobstore/s3"
	"coffer/internal/clock"
)

// ErrLocation is wrapped by the errors of a location Open cannot parse.
var ErrLocation = errors.New("invalid blob store location")

// Options configure Open and Wrap.
type Options struct {
	// Clock times retries and calls; default clock.Real.
	Clock clock.Clock
	// S3 configures an s3:// location: Endpoint, Region, PathStyle,
	// credentials, part sizes. Its Bucket and Prefix come from the
	// location, and its MaxAttempts is set to 1.
	S3 s3.Options
	// Retry configures the retry decorator.
	Retry retry.Options
	// Limit configures the adaptive concurrency limit.
	Limit limit.Options
}

// Store is an opened blob store in its decorators. Its methods are the
// outermost decorator's (blobstore.Store and blobstore.RangeReader).
type Store struct {
	*metrics.Store
	// Backend is the undecorated store.
	Backend blobstore.Store
	// Retry and Limit are the decorators, for their counters.
	Retry *retry.Store
	Limit *limit.Store
}

var (
	_ blobstore.Store       = (*Store)(nil)
	_ blobstore.RangeReader = (*Store)(nil)
	_ blobstore.Prefetcher  = (*Store)(nil)
)

// Open opens the store at loc (see the package comment) in the
// decorators.
func Open(ctx context.Context, loc string, opts Options) (*Store, error) {
	backend, err := openBackend(ctx, loc, opts.S3)
	if err != nil {
		return nil, err
	}
	return Wrap(backend, opts), nil
}

// Wrap puts backend in the decorators.
func Wrap(backend blobstore.Store, opts Options) *Store {
	lim := limit.New(backend, opts.Limit)
	if opts.Retry.Clock == nil {
		opts.Retry.Clock = opts.Clock
	}
	ret := retry.New(lim, opts.Retry)
	return &Store{Store: metrics.New(ret, opts.Clock), Backend: backend, Retry: ret, Limit: lim}
}

// Prefetch passes the hint to the backend when it takes hints
// (blobstore.Prefetcher), past the decorators: a hint reads nothing the
// caller waits for, so it is neither limited, retried nor counted.
func (s *Store) Prefetch(ctx context.Context, name string, off, n int64) error {
	if p, ok := s.Backend.(blobstore.Prefetcher); ok {
		return p.Prefetch(ctx, name, off, n)
	}
	return nil
}

// WriteMetrics writes the metrics of every decorator in Prometheus text
// format.
func (s *Store) WriteMetrics(w io.Writer) {
	s.Store.WriteMetrics(w)
	s.Retry.WriteMetrics(w)
	s.Limit.WriteMetrics(w)
}

func openBackend(ctx context.Context, loc string, s3opts s3.Options) (blobstore.Store, error) {
	scheme, _, isURL := strings.Cut(loc, "://")
	if !isURL {
		if loc == "" {
			return nil, fmt.Errorf("%w: empty", ErrLocation)
		}
		return openLocal(loc)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrLocation, loc, err)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%w %q: no user, query or fragment allowed", ErrLocation, loc)
	}
	switch strings.ToLower(scheme) {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("%w %q: a file URL names no host (file:///path)", ErrLocation, loc)
		}
		return openLocal(u.Path)
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("%w %q: no bucket (s3://BUCKET/PREFIX)", ErrLocation, loc)
		}
		s3opts.Bucket, s3opts.Prefix = u.Host, strings.Trim(u.Path, "/")
		s3opts.MaxAttempts = 1
		st, err := s3.Open(ctx, s3opts)
		if err != nil {
			return nil, fmt.Errorf("open blob store %s: %w", loc, err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("%w %q: unknown scheme %q (a path, file:// or s3://)", ErrLocation, loc, scheme)
}

func openLocal(dir string) (blobstore.Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: empty path", ErrLocation)
	}
	st, err := local.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open blob store %s: %w", dir, err)
	}
	return st, nil
}

// Package s3 implements blobstore.Store on any S3-compatible object store
// (AWS S3, Ceph RGW, versitygw, MinIO, Garage, …) through aws-sdk-go-v2.
//
// An object named "a/b" is the key PREFIX/a/b of the bucket. S3 gives the
// contract's guarantees by itself: a PUT is atomic and strongly consistent
// (read-after-write), and a multipart upload becomes visible whole, when it
// completes, or not at all. Small objects go up in one PUT with a
// Content-Length; objects of Options.MultipartThreshold bytes or more go up
// in parts, several at once. Ranged reads are ranged GETs of only the bytes
// asked for, read straight into the caller's buffer (blobstore.RangeReader).
//
// The client is set up for S3-compatible servers rather than only AWS:
// request checksums are computed and response checksums validated only
// when an operation requires them (since service/s3 v1.73 the SDK sends
// CRC32 checksums by default, which many S3-compatible servers reject);
// the integrity of an upload is still checked by the server through the
// SigV4 payload hash (x-amz-content-sha256). The SDK's retryer has no retry
// token bucket: the default bucket (500 tokens, 5 per throttled retry)
// runs dry in a long 503 SlowDown storm and then fails every request at
// once, so here each request retries on its own budget (Options.MaxAttempts
// with capped exponential backoff).
//
// Errors: a missing object is blobstore.ErrNotFound (matched on the SDK's
// error types and HTTP status, never on text); a throttling answer (503,
// 429, SlowDown and the SDK's other throttle codes) wraps
// blobstore.ErrThrottled; server errors, dropped connections, timeouts and a
// response body cut short wrap blobstore.ErrTransient. Every other error is
// left unmarked, and the retry decorator does not retry it.
package s3

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/errgroup"

	"coffer/internal/blobstore"
)

// Defaults of Options.
const (
	DefaultMaxAttempts        = 10
	DefaultMaxBackoff         = 20 * time.Second
	DefaultMultipartThreshold = 100 << 20
	DefaultPartSize           = 16 << 20
	DefaultPartConcurrency    = 4
	DefaultConnections        = 64
	DefaultStallTimeout       = time.Minute
	// MinPartSize is S3's smallest part of a multipart upload but the last.
	MinPartSize = 5 << 20
)

// Options configure a Store. Endpoint, Region and the credentials, when
// empty, come from the standard AWS environment: AWS_ENDPOINT_URL_S3 or
// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
// (or a profile of the shared configuration files, AWS_PROFILE).
type Options struct {
	// Bucket is the bucket's name; it must exist.
	Bucket string
	// Prefix is put before every object name ("" for the bucket's root);
	// a missing trailing slash is added.
	Prefix string
	// Endpoint is the server's base URL, e.g. "http://127.0.0.1:7070".
	Endpoint string
	// Region signs requests; default the environment's, else "us-east-1".
	Region string
	// PathStyle addresses the bucket in the path (http://host/bucket/key)
	// rather than the host name (http://bucket.host/key), as most servers
	// other than AWS need.
	PathStyle bool
	// AccessKeyID and SecretAccessKey, when both set, are the credentials
	// instead of the environment's.
	AccessKeyID, SecretAccessKey string
	// MaxAttempts is how often the SDK tries one request (1: no retries,
	// for callers that retry themselves, as blobstore/location does);
	// default DefaultMaxAttempts.
	MaxAttempts int
	// MaxBackoff caps the SDK's delay between attempts; default
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
	// MultipartThreshold is the size from which an object is uploaded in
	// parts; default DefaultMultipartThreshold, above the largest packs.
	MultipartThreshold int64
	// PartSize is the size of the parts (at least MinPartSize); default
	// DefaultPartSize.
	PartSize int64
	// PartConcurrency is how many parts of one object go up at once;
	// default DefaultPartConcurrency.
	PartConcurrency int
	// ListPageSize is the number of keys asked for per listing page;
	// default the server's (1000 on S3).
	ListPageSize int32
	// Connections is how many idle connections to the server are kept;
	// default DefaultConnections.
	Connections int
	// StallTimeout fails a request whose connection delivers no data for
	// this long; default DefaultStallTimeout.
	StallTimeout time.Duration
	// ReadAhead is the block size of dense ranged reads (see
	// readahead.go): a read of a run of chunks near an earlier read of
	// the object fetches its whole aligned block of this many bytes with
	// one GET, and the reads of that block are served from it. Default
	// DefaultReadAhead; negative: none, every ranged read is a GET of its
	// own bytes.
	ReadAhead int64
}

// Store is a blob store on one bucket and key prefix.
type Store struct {
	client    *s3.Client
	bucket    string
	prefix    string
	threshold int64
	partSize  int64
	parts     int
	pageSize  int32
	ahead     *readAhead   // nil: no read-ahead
	gets      atomic.Int64 // ranged GETs sent (tests)
}

var (
	_ blobstore.Store       = (*Store)(nil)
	_ blobstore.RangeReader = (*Store)(nil)
)

// Open connects to the bucket and checks that it can be reached.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Bucket == "" {
		return nil, errors.New("open s3 store: no bucket")
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.PartSize < MinPartSize {
		return nil, fmt.Errorf("open s3 store: part size %d is below S3's minimum of %d", opts.PartSize, MinPartSize)
	}
	s := &Store{
		bucket:    opts.Bucket,
		prefix:    strings.TrimPrefix(opts.Prefix, "/"),
		threshold: cmp.Or(opts.MultipartThreshold, DefaultMultipartThreshold),
		partSize:  opts.PartSize,
		parts:     cmp.Or(opts.PartConcurrency, DefaultPartConcurrency),
		pageSize:  opts.ListPageSize,
	}
	if opts.ReadAhead >= 0 {
		s.ahead = &readAhead{size: cmp.Or(opts.ReadAhead, DefaultReadAhead)}
	}
	if s.prefix != "" && !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	if s.prefix != "" {
		if err := blobstore.CheckName(strings.TrimSuffix(s.prefix, "/")); err != nil {
			return nil, fmt.Errorf("open s3 store: prefix: %w", err)
		}
	}
	client, err := newClient(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("open s3 store: %w", err)
	}
	s.client = client
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		var notFound *types.NotFound
		if errors.As(err, &notFound) {
			return nil, fmt.Errorf("open s3 store: bucket %s does not exist", s.bucket)
		}
		return nil, fmt.Errorf("open s3 store: bucket %s: %w", s.bucket, err)
	}
	return s, nil
}

// newClient builds the SDK client from opts and the AWS environment.
func newClient(ctx context.Context, opts Options) (*s3.Client, error) {
	attempts := cmp.Or(opts.MaxAttempts, DefaultMaxAttempts)
	backoff := cmp.Or(opts.MaxBackoff, DefaultMaxBackoff)
	conns := cmp.Or(opts.Connections, DefaultConnections)
	httpClient := awshttp.NewBuildableClient().
		WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConns = conns
			tr.MaxIdleConnsPerHost = conns
		}).
		WithReadTimeout(cmp.Or(opts.StallTimeout, DefaultStallTimeout))
	load := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = attempts
				o.MaxBackoff = backoff
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if opts.Region != "" {
		load = append(load, config.WithRegion(opts.Region))
	}
	if opts.AccessKeyID != "" && opts.SecretAccessKey != "" {
		load = append(load, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = opts.PathStyle
		o.DisableLogOutputChecksumValidationSkipped = true
	}), nil
}

// key returns the object key of a name.
func (s *Store) key(name string) *string { return aws.String(s.prefix + name) }

// classify maps an SDK error to the blobstore error classes.
func classify(err error) error {
	var status int
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var noKey *types.NoSuchKey
	var notFound *types.NotFound
	switch {
	case errors.As(err, &noKey) || errors.As(err, &notFound):
		return fmt.Errorf("%w (%w)", blobstore.ErrNotFound, err)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return err
	case status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests ||
		retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary:
		return fmt.Errorf("%w: %w", blobstore.ErrThrottled, err)
	case retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary:
		return fmt.Errorf("%w: %w", blobstore.ErrTransient, err)
	}
	return err
}

// bodyError marks an error reading a response body, after the server
// answered, as transient (the connection failed), unless the context
// ended.
func bodyError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("read body: %w", ctx.Err())
	}
	return fmt.Errorf("%w: read body: %w", blobstore.ErrTransient, err)
}

// Put uploads data under name, in one PUT or, from the multipart
// threshold on, in parts.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := blobstore.CheckName(name); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if int64(len(data)) >= s.threshold {
		if err := s.putParts(ctx, name, data); err != nil {
			return fmt.Errorf("put %s (%d bytes in parts): %w", name, len(data), err)
		}
		return nil
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.bucket,
		Key:           s.key(name),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", name, classify(err))
	}
	return nil
}

// putParts uploads data as a multipart upload, PartConcurrency parts at a
// time, and aborts the upload if any step fails, so that no parts are
// left stored. After a part fails no new part starts, but the parts
// already under way finish first: a part that is still arriving when the
// upload is aborted may be stored after all (S3's documentation of
// AbortMultipartUpload warns of this).
func (s *Store) putParts(ctx context.Context, name string, data []byte) (err error) {
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: s.key(name)})
	if err != nil {
		return fmt.Errorf("create upload: %w", classify(err))
	}
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultStallTimeout)
		defer cancel()
		_, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: &s.bucket, Key: s.key(name), UploadId: up.UploadId})
		if aerr != nil {
			err = fmt.Errorf("%w (and aborting upload %s failed: %v)", err, aws.ToString(up.UploadId), aerr)
		}
	}()
	n := (int64(len(data)) + s.partSize - 1) / s.partSize
	parts := make([]types.CompletedPart, n)
	var g errgroup.Group
	g.SetLimit(s.parts)
	var failed atomic.Bool
	for i := range n {
		if failed.Load() {
			break
		}
		part := data[i*s.partSize : min((i+1)*s.partSize, int64(len(data)))]
		num := aws.Int32(int32(i + 1))
		g.Go(func() error {
			if failed.Load() {
				return nil
			}
			out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
				Bucket:        &s.bucket,
				Key:           s.key(name),
				UploadId:      up.UploadId,
				PartNumber:    num,
				Body:          bytes.NewReader(part),
				ContentLength: aws.Int64(int64(len(part))),
			})
			if err != nil {
				failed.Store(true)
				return fmt.Errorf("upload part %d: %w", *num, classify(err))
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: num}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             s.key(name),
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return fmt.Errorf("complete upload: %w", classify(err))
	}
	return nil
}

// Get reads the whole object.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	if err := blobstore.CheckName(name); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: s.key(name)})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, classify(err))
	}
	defer out.Body.Close()
	var b []byte
	if size := aws.ToInt64(out.ContentLength); size > 0 {
		b = make([]byte, size)
		_, err = io.ReadFull(out.Body, b)
	} else {
		b, err = io.ReadAll(out.Body)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, bodyError(ctx, err))
	}
	return b, nil
}

// GetRange reads exactly n bytes at off with one ranged GET.
func (s *Store) GetRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	return s.ReadRange(ctx, name, off, n, nil)
}

// ReadRange is GetRange into buf's memory when buf holds n bytes
// (blobstore.RangeReader): the response body is read straight into it, or
// the bytes are copied there from a read-ahead window (Options.ReadAhead).
func (s *Store) ReadRange(ctx context.Context, name string, off, n int64, buf []byte) ([]byte, error) {
	if err := blobstore.CheckName(name); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("get %s [%d,+%d]: negative range", name, off, n)
	}
	if s.ahead != nil && n > 0 && n < s.ahead.size {
		fetch := func(ctx context.Context, off, size int64, buf []byte) ([]byte, error) {
			return s.getRange(ctx, name, off, size, buf, true)
		}
		if b, ok, err := s.ahead.read(ctx, name, off, n, buf, fetch); ok {
			return b, err
		}
	}
	return s.getRange(ctx, name, off, n, buf, false)
}

// getRange reads n bytes at off of name with one ranged GET, into buf's
// memory when it holds them; with upTo, fewer when the object ends
// sooner (but at least one).
func (s *Store) getRange(ctx context.Context, name string, off, n int64, buf []byte, upTo bool) ([]byte, error) {
	if n == 0 { // HTTP cannot ask for no bytes: check the size instead
		info, err := s.Stat(ctx, name)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, pastEnd(name, off, n, info.Size)
		}
		return []byte{}, nil
	}
	s.gets.Add(1)
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &s.bucket,
		Key:    s.key(name),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1)),
	})
	if err != nil {
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable {
			return nil, pastEnd(name, off, n, -1)
		}
		return nil, fmt.Errorf("get %s [%d,+%d]: %w", name, off, n, classify(err))
	}
	defer out.Body.Close()
	start, size, ok := parseContentRange(aws.ToString(out.ContentRange))
	if !ok { // the server ignored the range and sent the whole object
		start, size = 0, aws.ToInt64(out.ContentLength)
	}
	if ok && start != off {
		return nil, fmt.Errorf("get %s [%d,+%d]: server answered bytes from %d", name, off, n, start)
	}
	if upTo && off < size {
		n = min(n, size-off)
	}
	if off+n > size {
		return nil, pastEnd(name, off, n, size)
	}
	if !ok {
		if _, err := io.CopyN(io.Discard, out.Body, off-start); err != nil {
			return nil, fmt.Errorf("get %s [%d,+%d]: %w", name, off, n, bodyError(ctx, err))
		}
	}
	b := buf
	if int64(cap(b)) < n {
		b = make([]byte, n)
	}
	b = b[:n:n]
	if _, err := io.ReadFull(out.Body, b); err != nil {
		return nil, fmt.Errorf("get %s [%d,+%d]: %w", name, off, n, bodyError(ctx, err))
	}
	return b, nil
}

// pastEnd is the error of a range beyond the object's end; size < 0 means
// unknown.
func pastEnd(name string, off, n, size int64) error {
	if size < 0 {
		return fmt.Errorf("get %s [%d,+%d]: range beyond the end of the object: %w", name, off, n, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("get %s [%d,+%d]: object is %d bytes: %w", name, off, n, size, io.ErrUnexpectedEOF)
}

// parseContentRange parses "bytes START-END/SIZE".
func parseContentRange(v string) (start, size int64, ok bool) {
	var end int64
	if _, err := fmt.Sscanf(v, "bytes %d-%d/%d", &start, &end, &size); err != nil {
		return 0, 0, false
	}
	return start, size, true
}

// Stat returns the object's size (a HEAD request).
func (s *Store) Stat(ctx context.Context, name string) (blobstore.Info, error) {
	if err := blobstore.CheckName(name); err != nil {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", name, err)
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: s.key(name)})
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("stat %s: %w", name, classify(err))
	}
	return blobstore.Info{Name: name, Size: aws.ToInt64(out.ContentLength)}, nil
}

// List calls fn for the objects under prefix, page by page of
// ListObjectsV2, in the server's (lexical) key order. Keys under the
// store's prefix that are not valid blob names (a directory marker "a/",
// say) are not objects of this store and are skipped.
func (s *Store) List(ctx context.Context, prefix string, fn func(blobstore.Info) error) error {
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + prefix)}
	if s.pageSize > 0 {
		in.MaxKeys = aws.Int32(s.pageSize)
	}
	pages := s3.NewListObjectsV2Paginator(s.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, classify(err))
		}
		for _, o := range page.Contents {
			name, ok := strings.CutPrefix(aws.ToString(o.Key), s.prefix)
			if !ok || blobstore.CheckName(name) != nil {
				continue
			}
			if err := fn(blobstore.Info{Name: name, Size: aws.ToInt64(o.Size)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete removes the object. S3 answers a DELETE of a missing key with
// success, so a HEAD first finds out whether it exists: the contract's
// ErrNotFound costs one round trip per Delete.
func (s *Store) Delete(ctx context.Context, name string) error {
	if _, err := s.Stat(ctx, name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: s.key(name)}); err != nil {
		return fmt.Errorf("delete %s: %w", name, classify(err))
	}
	return nil
}

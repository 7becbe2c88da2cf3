// Package blobstore defines the storage contract under Coffer's chunk store:
// immutable named objects that are written whole, read whole or by range,
// listed by prefix and deleted. Implementations live in sub-packages (local,
// mem, s3); every one runs the suite in blobstore/blobtest. Decorators that
// every backend is wrapped in (retry, limit, metrics) live beside them, and
// blobstore/location opens a decorated store from a path or URL.
package blobstore

import (
	"context"
	"errors"
)

// ErrNotFound is returned (wrapped) by Get, GetRange, Stat and Delete when no
// object has the name. Test for it with errors.Is.
var ErrNotFound = errors.New("blob not found")

// Info describes a stored object.
type Info struct {
	Name string
	Size int64
}

// Store is the blob storage contract.
//
//   - Names are slash-separated paths of [A-Za-z0-9._-] segments (CheckName);
//     other names are refused with ErrInvalidName.
//   - Put is atomic and durable: when it returns nil the whole object is
//     stored and survives a crash; a failed or interrupted Put leaves either
//     the old state or nothing, never a partial object under the name.
//     Putting an existing name replaces it atomically.
//   - After Put returns, Get, Stat and List see the object (read-after-write).
//   - GetRange(name, off, n) returns exactly n bytes starting at off, or an
//     error if the object is shorter.
//   - List calls fn for every object whose name starts with prefix, in
//     lexical order; an error from fn stops the listing and is returned.
//   - Delete of a missing name returns ErrNotFound.
//   - Errors that another attempt may cure wrap ErrTransient or ErrThrottled
//     (Retryable); errors that none will cure may say so with
//     interface{ Permanent() bool }.
//   - All methods are safe for concurrent use.
type Store interface {
	Put(ctx context.Context, name string, data []byte) error
	Get(ctx context.Context, name string) ([]byte, error)
	GetRange(ctx context.Context, name string, off, n int64) ([]byte, error)
	Stat(ctx context.Context, name string) (Info, error)
	List(ctx context.Context, prefix string, fn func(Info) error) error
	Delete(ctx context.Context, name string) error
}

// RangeReader is implemented by stores that can read a range into memory
// the caller provides, so that bulk readers (restore, verify) reuse their
// buffers instead of allocating one per read.
//
// ReadRange returns the same n bytes as GetRange(name, off, n), in buf's
// memory when buf is large enough for the store's way of reading (the
// result then aliases buf and is valid until buf is reused), else in new
// memory. A buffer from directio.Buffer of n+2*directio.Align bytes is
// always large enough for the local store's direct reads.
type RangeReader interface {
	ReadRange(ctx context.Context, name string, off, n int64, buf []byte) ([]byte, error)
}

// Prefetcher is implemented by stores that can start reading a range ahead
// of the reads that will want it. Prefetch is a hint: it may do nothing,
// changes no object and no later read's result, and its error (a missing
// object, say) may be ignored. It may wait for the bytes: call it off the
// path of a read that waits. The local store asks the kernel to read the
// range into the page cache (POSIX_FADV_WILLNEED) and returns once the
// range's last page is read, so that small buffered reads of it that
// follow find it there instead of each waiting on the disk, and a caller
// hinting one range at a time bounds the read-ahead it queues.
type Prefetcher interface {
	Prefetch(ctx context.Context, name string, off, n int64) error
}

package blobstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidName is returned (wrapped) for a name that breaks the naming
// rules of the Store contract.
var ErrInvalidName = errors.New("invalid blob name")

// ErrThrottled is wrapped by the errors of a store whose server asked its
// client to slow down (S3's 503 SlowDown, HTTP 429). A throttled call may
// succeed later; the adaptive limiter (blobstore/limit) lowers concurrency
// when it sees one. Test for it with errors.Is.
var ErrThrottled = errors.New("blob store is throttling requests")

// ErrTransient is wrapped by the errors of a call that failed for a reason
// a later attempt may not meet: a server error (HTTP 5xx), a dropped
// connection, a timeout. Backends mark these errors; the retry decorator
// (blobstore/retry) retries them and nothing else.
var ErrTransient = errors.New("transient blob store error")

// Retryable reports whether err is worth another attempt: the backend
// marked it transient or throttled, and it is neither a missing object, a
// permanent failure (interface{ Permanent() bool }) nor the end of a
// context.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, ErrNotFound) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && p.Permanent() {
		return false
	}
	return errors.Is(err, ErrTransient) || errors.Is(err, ErrThrottled)
}

// CheckName checks name against the contract's naming rules: non-empty,
// slash-separated segments of [A-Za-z0-9._-], none of them empty, "." or
// "..". The error wraps ErrInvalidName.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
		for _, c := range seg {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
			if !ok {
				return fmt.Errorf("%w: %q", ErrInvalidName, name)
			}
		}
	}
	return nil
}

// ReadRange reads n bytes at off of the named object through s's
// RangeReader when it has one (into buf's memory when the store can), and
// through GetRange otherwise.
func ReadRange(ctx context.Context, s Store, name string, off, n int64, buf []byte) ([]byte, error) {
	if rr, ok := s.(RangeReader); ok {
		return rr.ReadRange(ctx, name, off, n, buf)
	}
	return s.GetRange(ctx, name, off, n)
}

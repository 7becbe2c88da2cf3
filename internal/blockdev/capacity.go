package blockdev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"coffer/internal/capacity"
)

// ErrTooLarge is matched (errors.Is) when a volume would be larger than
// the largest file the engine's filesystem can hold (ext4 with 4 KiB
// blocks: 16 TiB). The error is a *SizeLimitError that says both sizes.
var ErrTooLarge = errors.New("larger than the largest file the data filesystem can hold")

// SizeLimitError is the error of a volume size the filesystem cannot hold.
type SizeLimitError struct {
	Size  int64 // requested, in bytes
	Limit int64 // the largest size, a multiple of 512, that fits
}

func (e *SizeLimitError) Error() string {
	return fmt.Sprintf("size %d bytes is larger than the %d bytes the data filesystem can hold in one file", e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *SizeLimitError) Is(target error) bool { return target == ErrTooLarge }

// noSpace classifies a failure writing volume id (capacity.Classify) and
// tells the engine's monitor of a no-space one.
func (e *Engine) noSpace(err error, id string) error {
	return e.opts.Space.Note(capacity.Classify(err, "disk volume "+id, e.volDir(id)))
}

// truncate sets the size of a volume's data file; a size past the
// filesystem's largest file is a *SizeLimitError.
func (e *Engine) truncate(f *os.File, size int64) error {
	var err error
	if hk := e.hooks.truncate; hk != nil {
		err = hk(size)
	}
	if err == nil {
		err = f.Truncate(size)
	}
	if errors.Is(err, syscall.EFBIG) {
		return e.sizeLimit(size)
	}
	return err
}

// sync makes a volume's data file durable.
func (e *Engine) sync(f *os.File) error {
	if hk := e.hooks.sync; hk != nil {
		if err := hk(); err != nil {
			return err
		}
	}
	return f.Sync()
}

// CheckSize reports whether a volume of size bytes fits in one file of the
// engine's filesystem, by trying it: a sparse probe file in the volumes
// directory is truncated to size and removed. It returns nil, a
// *SizeLimitError (ErrTooLarge) naming the filesystem's limit, ErrInvalid
// for a size no volume may have, or the error of the probe (a no-space one
// is capacity.ErrNoSpace).
func (e *Engine) CheckSize(size int64) error {
	if size <= 0 || size%512 != 0 || size > maxVolumeSize {
		return fmt.Errorf("volume size %d: %w", size, ErrInvalid)
	}
	e.limitMu.Lock()
	fits, limit := e.fits, e.limit
	e.limitMu.Unlock()
	switch {
	case size <= fits:
		return nil
	case limit > 0 && size > limit:
		return &SizeLimitError{Size: size, Limit: limit}
	}
	err := e.probe(func(f *os.File) error { return e.truncate(f, size) })
	if err == nil {
		e.limitMu.Lock()
		e.fits = max(e.fits, size)
		e.limitMu.Unlock()
	}
	return err
}

// probe runs try on a new, empty probe file in the volumes directory and
// removes the file.
func (e *Engine) probe(try func(f *os.File) error) error {
	dir := filepath.Join(e.dir, "volumes")
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("probe file size: %w", e.opts.Space.Note(capacity.Classify(err, "disk volumes", dir)))
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return try(f)
}

// sizeLimit returns the *SizeLimitError of size, a size the filesystem
// refused with EFBIG, finding the filesystem's largest file by bisection
// with sparse truncations of a probe file (once; the result is kept).
func (e *Engine) sizeLimit(size int64) error {
	e.limitMu.Lock()
	limit := e.limit
	e.limitMu.Unlock()
	if limit == 0 {
		lo, hi := int64(0), size // lo fits, hi does not
		err := e.probe(func(f *os.File) error {
			for hi-lo > 512 {
				mid := lo + max(512, (hi-lo)/2/512*512)
				err := f.Truncate(mid)
				switch {
				case err == nil:
					lo = mid
				case errors.Is(err, syscall.EFBIG):
					hi = mid
				default:
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("size %d is too large for the data filesystem (%w); finding its limit failed: %w", size, ErrTooLarge, err)
		}
		limit = lo
		e.limitMu.Lock()
		e.limit = limit
		e.limitMu.Unlock()
	}
	return &SizeLimitError{Size: size, Limit: limit}
}

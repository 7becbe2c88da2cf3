// Package capacity knows how much the node's data filesystem can hold: it
// classifies the "no space" failures of the places that write there (the
// metadata database, the chunk store, disk volumes) into one error, and its
// Monitor measures free space for health, metrics and the free-space
// reserve below which new data is refused.
//
// A full filesystem is an operator's problem, not a bug: Classify turns
// ENOSPC and EDQUOT (and the metadata store turns SQLite's SQLITE_FULL) into
// an ARM error of kind resource.KindInsufficientStorage (HTTP 507, code
// InsufficientStorage) whose message names what was full and where, and
// which matches ErrNoSpace with errors.Is. Nothing needs restarting when
// space returns: every write tries again.
package capacity

import (
	"errors"
	"fmt"
	"syscall"

	"coffer/internal/resource"
)

// ErrNoSpace is matched (errors.Is) by every error that failed because the
// data filesystem had no space left.
var ErrNoSpace = errors.New("no space left on the data filesystem")

// Code is the ARM error code of a no-space failure.
const Code = "InsufficientStorage"

// RecommendedAction is what an operator does about a no-space failure.
const RecommendedAction = "Free space on the node's data filesystem (delete unused disks, snapshots or recovery points, or grow the filesystem); Coffer resumes by itself once space is back."

// Classify returns err unchanged unless it is a no-space failure (ENOSPC,
// EDQUOT, or an error already classified); then it returns the ARM error
// of kind resource.KindInsufficientStorage whose message names what was
// being written (e.g. "the chunk store") and path, wrapping both
// ErrNoSpace and err.
func Classify(err error, what, path string) error {
	if err == nil || !(errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) {
		return err
	}
	return Wrap(err, what, path)
}

// Wrap marks err (a failure the caller knows is for lack of space, such
// as SQLite's SQLITE_FULL) as a no-space failure of what at path.
func Wrap(err error, what, path string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNoSpace) {
		return err // classified below the caller
	}
	return &resource.Error{Kind: resource.KindInsufficientStorage, Code: Code, Message: message(what, path),
		Err: fmt.Errorf("%w: %w", ErrNoSpace, err)}
}

// Refused is the error of a write refused because free space is below the
// reserve: free bytes are left on the filesystem of dir, reserve required.
func Refused(dir string, free, reserve int64) error {
	return &resource.Error{Kind: resource.KindInsufficientStorage, Code: Code,
		Message: fmt.Sprintf("The node's data filesystem (data directory %s) has %s free, less than the %s Coffer keeps in reserve, so requests that store new data are refused. %s",
			dir, Bytes(free), Bytes(reserve), RecommendedAction),
		Err: ErrNoSpace}
}

func message(what, path string) string {
	where := ""
	if path != "" {
		where = " (" + path + ")"
	}
	if what == "" {
		what = "data"
	}
	return fmt.Sprintf("The node's data filesystem is full: there is no space left to write %s%s. %s", what, where, RecommendedAction)
}

// Bytes formats n in binary units for messages ("1.5 GiB", "512 B").
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

package job_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"coffer/internal/cluster"
	"coffer/internal/job"
	"coffer/internal/resource"
)

// TestFromErrorRetryable: a job's error detail says a retry may help, and
// that the error is not the user's, exactly when the same request can
// succeed later unchanged: after an internal error, once space is freed
// (InsufficientStorage) and once the node holding the disk is back
// (NodeUnavailable, which was neither retryable nor the operator's); bad
// input, a missing permission or a conflict are the user's and not
// retryable.
func TestFromErrorRetryable(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nodeGone := cluster.Unavailable("The disk 'd1'", cluster.Node{Name: "node-a", Heartbeat: now.Add(-time.Hour)}, now)
	for _, c := range []struct {
		name                 string
		err                  error
		code                 string
		retryable, userError bool
	}{
		{"node unavailable", fmt.Errorf("backup: %w", nodeGone), cluster.CodeNodeUnavailable, true, false},
		{"internal", errors.New("disk read: I/O error"), "InternalError", true, false},
		{"internal resource error", &resource.Error{Kind: resource.KindInternal, Code: "InternalError", Message: "m"}, "InternalError", true, false},
		{"no space", &resource.Error{Kind: resource.KindInsufficientStorage, Code: "InsufficientStorage", Message: "m"}, "InsufficientStorage", true, false},
		{"bad input", &resource.Error{Kind: resource.KindBadRequest, Code: "InvalidInput", Message: "m"}, "InvalidInput", false, true},
		{"forbidden", &resource.Error{Kind: resource.KindForbidden, Code: "UserErrorMissingRequiredPermissions", Message: "m"}, "UserErrorMissingRequiredPermissions", false, true},
		{"conflict", &resource.Error{Kind: resource.KindConflict, Code: "Conflict", Message: "m"}, "Conflict", false, true},
	} {
		u := job.FromError(c.err)
		if u.Code != c.code || u.IsRetryable != c.retryable || u.IsUserError != c.userError {
			t.Errorf("%s: code %s, isRetryable %v, isUserError %v; want %s, %v, %v",
				c.name, u.Code, u.IsRetryable, u.IsUserError, c.code, c.retryable, c.userError)
		}
	}
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"coffer/internal/resource"
	"coffer/internal/store"
)

// DefaultTaskGrace is how long, past the registry's node timeout, the
// queued work bound to a node that stopped beating (the backups and
// operations of the disks it holds) waits for the node to return before
// another node fails it (Registry.GoneTx). It is the job queue's lease
// duration, so that by then any lease the node held has expired.
const DefaultTaskGrace = 5 * time.Minute

// GoneTx reads the node name in tx and reports, as a non-nil cause, that
// work bound to it cannot wait any longer at now: neither the node's last
// heartbeat nor since (when the work began to wait, as far as the caller
// saw: when it was queued, or when the caller began to watch) is within
// the registry's timeout plus grace (zero: DefaultTaskGrace) before now.
// The cause is Unavailable for what (such as "The disk 'd1'"): 503
// NodeUnavailable naming the node and when it was last seen, the wording
// the API answers a request for the node with. A node that never
// registered is gone once since is that far back. While the node is live,
// or within the grace, the cause is nil.
func (r *Registry) GoneTx(ctx context.Context, tx store.Tx, name, what string, now, since time.Time, grace time.Duration) (cause, err error) {
	if grace <= 0 {
		grace = DefaultTaskGrace
	}
	wait := r.timeout() + grace
	n, err := getNode(ctx, tx, name)
	if errors.Is(err, ErrUnknownNode) {
		if since.Add(wait).After(now) {
			return nil, nil
		}
		return &resource.Error{Kind: resource.KindUnavailable, Code: CodeNodeUnavailable,
			Message: fmt.Sprintf("%s is held by node '%s', which is not registered.", what, name),
			Err:     fmt.Errorf("node %s: %w: %w", name, ErrNodeUnavailable, err)}, nil
	}
	if err != nil {
		return nil, err
	}
	if n.Heartbeat.Add(wait).After(now) || since.Add(wait).After(now) {
		return nil, nil
	}
	return Unavailable(what, n, now), nil
}

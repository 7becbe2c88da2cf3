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
	n, err := getNode(ctx, tx, name)
	if errors.Is(err, ErrUnknownNode) {
		if !r.overdue(since, now, grace) {
			return nil, nil
		}
		return &resource.Error{Kind: resource.KindUnavailable, Code: CodeNodeUnavailable,
			Message: fmt.Sprintf("%s is held by node '%s', which is not registered.", what, name),
			Err:     fmt.Errorf("node %s: %w: %w", name, ErrNodeUnavailable, err)}, nil
	}
	if err != nil {
		return nil, err
	}
	if !r.overdue(n.Heartbeat, now, grace) || !r.overdue(since, now, grace) {
		return nil, nil
	}
	return Unavailable(what, n, now), nil
}

// AnyGone reports whether GoneTx could report some registered node's work
// gone at now, for work waiting since since or later: whether a node's
// last heartbeat is older than the timeout plus grace, and since too. It
// reads only the node records, so that a sweep of the queue for stranded
// work (worker.Pool.FailStranded) is needed only then, not in a healthy
// cluster. Node records are never removed, so every node work is bound to
// (a disk's home, set to a registered node) is among them.
func (r *Registry) AnyGone(ctx context.Context, now, since time.Time, grace time.Duration) (bool, error) {
	if !r.overdue(since, now, grace) {
		return false, nil
	}
	nodes, err := r.Nodes(ctx)
	if err != nil {
		return false, err
	}
	for _, n := range nodes {
		if r.overdue(n.Heartbeat, now, grace) {
			return true, nil
		}
	}
	return false, nil
}

// overdue reports whether at now the timeout plus grace (zero:
// DefaultTaskGrace) has passed since t.
func (r *Registry) overdue(t, now time.Time, grace time.Duration) bool {
	if grace <= 0 {
		grace = DefaultTaskGrace
	}
	return !t.Add(r.timeout() + grace).After(now)
}

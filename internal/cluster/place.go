package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"coffer/internal/resource"
)

// CodeNodeUnavailable is the ARM error code of a request that needs a node
// that is down (503): a disk's data path, whose volume only its home node
// holds.
const CodeNodeUnavailable = "NodeUnavailable"

// ErrNodeUnavailable: the node a request needs has not beaten within the
// registry's timeout. The error that carries it (Unavailable) names the
// node and when it was last seen.
var ErrNodeUnavailable = errors.New("node unavailable")

// Unavailable is the error of a request that needs node n, which is not
// live at now: 503 NodeUnavailable naming the node and when it last beat,
// matched with errors.Is(err, ErrNodeUnavailable).
func Unavailable(what string, n Node, now time.Time) error {
	seen := "it was last seen"
	if !n.Stopped.IsZero() {
		seen = "it stopped"
	}
	return &resource.Error{Kind: resource.KindUnavailable, Code: CodeNodeUnavailable,
		Message: fmt.Sprintf("%s is held by node '%s', which is unavailable: %s at %s (%s ago). Retry when the node is back.",
			what, n.Name, seen, n.Heartbeat.UTC().Format(time.RFC3339), now.Sub(n.Heartbeat).Truncate(time.Second)),
		Err: fmt.Errorf("node %s: %w", n.Name, ErrNodeUnavailable)}
}

// Reach returns the node registered under name if it is live at the
// registry's clock, else the Unavailable error for what (a description of
// what the caller needs, such as "The disk 'd1'").
func (r *Registry) Reach(ctx context.Context, name, what string) (Node, error) {
	n, err := r.Get(ctx, name)
	if err != nil {
		return Node{}, err
	}
	if now := r.Clock.Now(); !r.Live(n, now) {
		return n, Unavailable(what, n, now)
	}
	return n, nil
}

// Placement says which node creates a new volume (a new disk, a restore):
// see Registry.Place.
type Placement string

// The placements.
const (
	// PlaceLeastUsed: the live node whose volumes use the least space (by
	// the registry's heartbeats), one of equals at random.
	PlaceLeastUsed Placement = "least-used"
	// PlaceLocal: the node that took the request.
	PlaceLocal Placement = "local"
)

// ParsePlacement reads a --placement value ("" is least-used).
func ParsePlacement(s string) (Placement, error) {
	switch p := Placement(strings.ToLower(s)); p {
	case "", PlaceLeastUsed:
		return PlaceLeastUsed, nil
	case PlaceLocal:
		return p, nil
	}
	return "", fmt.Errorf("--placement %q: want %s or %s", s, PlaceLeastUsed, PlaceLocal)
}

// Place names the node that creates a new volume under p, asked on node
// self. Under PlaceLeastUsed it is the live node whose volumes use the
// least space by their last heartbeats, one of equals at random (so that
// disks made together on an empty cluster spread out); self when no node
// is live by the registry, as on a node that has not beaten yet. Nodes
// whose last heartbeat is older than half the timeout are passed over
// while any other live node has beaten since: such a node may have just
// died, and placement is the one choice that can avoid it (it stays live
// for everything else until the timeout).
func (r *Registry) Place(ctx context.Context, p Placement, self string) (string, error) {
	if p == PlaceLocal {
		return self, nil
	}
	nodes, err := r.Nodes(ctx)
	if err != nil {
		return "", fmt.Errorf("place a volume: %w", err)
	}
	now := r.Clock.Now()
	fresh := now.Add(-r.timeout() / 2)
	var least, leastFresh []string
	var used, usedFresh int64
	for _, n := range nodes {
		if !r.Live(n, now) {
			continue
		}
		least, used = appendLeast(least, used, n)
		if n.Heartbeat.After(fresh) {
			leastFresh, usedFresh = appendLeast(leastFresh, usedFresh, n)
		}
	}
	if len(leastFresh) > 0 {
		least = leastFresh
	}
	if len(least) == 0 {
		return self, nil
	}
	return least[rand.IntN(len(least))], nil
}

// appendLeast adds n to least, the names of the nodes that use the least
// space (used bytes) so far, and returns them and that space.
func appendLeast(least []string, used int64, n Node) ([]string, int64) {
	switch {
	case len(least) == 0 || n.UsedBytes < used:
		return []string{n.Name}, n.UsedBytes
	case n.UsedBytes == used:
		return append(least, n.Name), used
	}
	return least, used
}

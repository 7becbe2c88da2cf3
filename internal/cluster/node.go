package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store"
)

// Errors of the registry, matched with errors.Is.
var (
	// ErrUnknownNode: no node has registered under the name.
	ErrUnknownNode = errors.New("unknown node")
	// ErrNodeReplaced: another process registered under this node's name
	// since it did (two nodes were given one --node-name, or a restart).
	ErrNodeReplaced = errors.New("node registered again by another process")
)

// Defaults of the registry.
const (
	DefaultHeartbeat   = 3 * time.Second
	DefaultNodeTimeout = 15 * time.Second
)

const kindNode = "cluster.node"

func nodeKey(name string) string { return "/cluster/nodes/" + strings.ToLower(name) }

// Node is one `coffer serve` process as registered.
type Node struct {
	// Name is the node's --node-name (the host name by default); names
	// compare case-insensitively.
	Name string `json:"name"`
	// API is the URL other nodes forward API requests to
	// (scheme://host:port of its listener); Endpoint is the URL clients
	// use for it (its --public-endpoint, which several nodes behind one
	// load balancer share); NBD is the host:port its NBD server listens
	// on, as clients reach it.
	API      string `json:"api"`
	Endpoint string `json:"endpoint,omitempty"`
	NBD      string `json:"nbd,omitempty"`
	// Incarnation is random per process: it tells a restarted node from
	// its previous run, and two processes given one name apart.
	Incarnation string    `json:"incarnation"`
	Started     time.Time `json:"started"`
	Heartbeat   time.Time `json:"heartbeat"`
	// UsedBytes is the space the node's volumes use (placement).
	UsedBytes int64 `json:"usedBytes"`
	// Stopped is when the node stopped cleanly (Leave); zero while it
	// runs, or when it died without stopping.
	Stopped time.Time `json:"stopped,omitzero"`
}

// Registry keeps the nodes of a metadata store.
type Registry struct {
	Store store.Store
	Clock clock.Clock
	// Timeout: a node is live while its heartbeat is younger (0:
	// DefaultNodeTimeout).
	Timeout time.Duration
}

func (r *Registry) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultNodeTimeout
}

// Live reports whether n runs at now: it has not stopped and its
// heartbeat is younger than the timeout.
func (r *Registry) Live(n Node, now time.Time) bool {
	return n.Stopped.IsZero() && n.Heartbeat.After(now.Add(-r.timeout()))
}

func putNode(ctx context.Context, tx store.Tx, n Node) error {
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node %s: %w", n.Name, err)
	}
	if err := tx.Put(ctx, &store.Object{Kind: kindNode, Key: nodeKey(n.Name), Data: b}, store.PutOptions{}); err != nil {
		return fmt.Errorf("write node %s: %w", n.Name, err)
	}
	return nil
}

func getNode(ctx context.Context, tx store.Tx, name string) (Node, error) {
	o, err := tx.Get(ctx, kindNode, nodeKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return Node{}, fmt.Errorf("node %s: %w", name, ErrUnknownNode)
	}
	if err != nil {
		return Node{}, fmt.Errorf("read node %s: %w", name, err)
	}
	var n Node
	if err := json.Unmarshal(o.Data, &n); err != nil {
		return Node{}, fmt.Errorf("decode node %s: %w", name, err)
	}
	return n, nil
}

// Register records n as started now, with a heartbeat now, replacing what
// an earlier process registered under its name. n needs a Name and an
// Incarnation. It returns the record.
func (r *Registry) Register(ctx context.Context, n Node) (Node, error) {
	if n.Name == "" || n.Incarnation == "" {
		return Node{}, fmt.Errorf("register node: a node needs a name and an incarnation")
	}
	err := r.Store.Update(ctx, func(tx store.Tx) error {
		now := r.Clock.Now().UTC()
		n.Started, n.Heartbeat = now, now
		return putNode(ctx, tx, n)
	})
	if err != nil {
		return Node{}, fmt.Errorf("register node: %w", err)
	}
	return n, nil
}

// Beat renews the heartbeat of the node registered as n (and records its
// used space). It fails with ErrNodeReplaced when another incarnation has
// registered under n's name since.
func (r *Registry) Beat(ctx context.Context, n Node, usedBytes int64) (Node, error) {
	var out Node
	err := r.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := getNode(ctx, tx, n.Name)
		if err != nil {
			return err
		}
		if cur.Incarnation != n.Incarnation {
			return fmt.Errorf("node %s: %w", n.Name, ErrNodeReplaced)
		}
		cur.Heartbeat = r.Clock.Now().UTC()
		cur.UsedBytes = usedBytes
		out = cur
		return putNode(ctx, tx, cur)
	})
	if err != nil {
		return n, fmt.Errorf("heartbeat: %w", err)
	}
	return out, nil
}

// Leave records that the node registered as n stopped cleanly: it is no
// longer live (nothing is placed on it, its disks say it is unavailable)
// until it registers again. It does nothing when another incarnation has
// registered under n's name since.
func (r *Registry) Leave(ctx context.Context, n Node) error {
	err := r.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := getNode(ctx, tx, n.Name)
		if err != nil || cur.Incarnation != n.Incarnation {
			return err
		}
		now := r.Clock.Now().UTC()
		cur.Heartbeat, cur.Stopped = now, now
		return putNode(ctx, tx, cur)
	})
	if err != nil {
		return fmt.Errorf("record that node %s stopped: %w", n.Name, err)
	}
	return nil
}

// Get returns the node registered under name, or ErrUnknownNode.
func (r *Registry) Get(ctx context.Context, name string) (Node, error) {
	var n Node
	err := r.Store.View(ctx, func(tx store.Tx) error {
		var err error
		n, err = getNode(ctx, tx, name)
		return err
	})
	return n, err
}

// Nodes returns every registered node, by name.
func (r *Registry) Nodes(ctx context.Context) ([]Node, error) {
	var out []Node
	err := r.Store.View(ctx, func(tx store.Tx) error {
		objs, err := tx.List(ctx, store.Query{Kind: kindNode, Prefix: "/cluster/nodes/"})
		if err != nil {
			return err
		}
		out = make([]Node, 0, len(objs))
		for _, o := range objs {
			var n Node
			if err := json.Unmarshal(o.Data, &n); err != nil {
				return fmt.Errorf("decode node %s: %w", o.Key, err)
			}
			out = append(out, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name) })
	return out, nil
}

// Run beats for n every interval (0: DefaultHeartbeat) until ctx ends,
// asking used for the node's used space at each beat (nil: 0). It stops,
// logging why, if another incarnation registered under n's name; other
// failures are logged and retried at the next beat.
func (r *Registry) Run(ctx context.Context, n Node, interval time.Duration, used func() int64, logger *slog.Logger) {
	if interval <= 0 {
		interval = DefaultHeartbeat
	}
	if logger == nil {
		logger = slog.Default()
	}
	for {
		tm := r.Clock.NewTimer(interval)
		select {
		case <-ctx.Done():
			tm.Stop()
			return
		case <-tm.C():
		}
		var u int64
		if used != nil {
			u = used()
		}
		if _, err := r.Beat(ctx, n, u); err != nil {
			if ctx.Err() != nil {
				return
			}
			logger.Error("node heartbeat", "node", n.Name, "err", err)
			if errors.Is(err, ErrNodeReplaced) {
				return
			}
		}
	}
}

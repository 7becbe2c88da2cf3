package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"coffer/internal/clock"
	"coffer/internal/store"
)

// ErrLeaseLost is returned (wrapped) by Renew, Release and Fence when the
// caller's holding is over: another holder or a later epoch holds the
// lease, or (Renew) it expired.
var ErrLeaseLost = errors.New("lease lost")

// DefaultLeaseTTL is how long a lease lasts unless renewed.
const DefaultLeaseTTL = 15 * time.Second

// kindLease is the store kind of lease rows.
const kindLease = "cluster.lease"

func leaseKey(name string) string { return "/cluster/leases/" + strings.ToLower(name) }

// Lease is one holding of a named lease.
type Lease struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	// Epoch is one larger than the epoch of every holding before this one
	// (the first holding's is 1). It stays the same across renewals.
	Epoch uint64 `json:"epoch"`
	// Acquired is when this holding began; Expiry when it ends unless
	// renewed (a released holding has an Expiry at its release).
	Acquired time.Time `json:"acquired"`
	Expiry   time.Time `json:"expiry"`
}

// Held reports whether the holding has not expired at now. It is what a
// holder believes; Fence is what its writes check.
func (l Lease) Held(now time.Time) bool { return l.Holder != "" && now.Before(l.Expiry) }

// Leases takes, renews and releases named leases kept in a metadata store.
type Leases struct {
	Store store.Store
	Clock clock.Clock
	// TTL is how long a holding lasts unless renewed (0: DefaultLeaseTTL).
	TTL time.Duration
}

func (l *Leases) ttl() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return DefaultLeaseTTL
}

func getLease(ctx context.Context, tx store.Tx, name string) (Lease, bool, error) {
	o, err := tx.Get(ctx, kindLease, leaseKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return Lease{Name: name}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("read lease %s: %w", name, err)
	}
	var cur Lease
	if err := json.Unmarshal(o.Data, &cur); err != nil {
		return Lease{}, false, fmt.Errorf("decode lease %s: %w", name, err)
	}
	return cur, true, nil
}

func putLease(ctx context.Context, tx store.Tx, l Lease) error {
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode lease %s: %w", l.Name, err)
	}
	if err := tx.Put(ctx, &store.Object{Kind: kindLease, Key: leaseKey(l.Name), Data: b}, store.PutOptions{}); err != nil {
		return fmt.Errorf("write lease %s: %w", l.Name, err)
	}
	return nil
}

// Get returns the lease's current holding as stored (a zero Holder: never
// held).
func (l *Leases) Get(ctx context.Context, name string) (Lease, error) {
	var cur Lease
	err := l.Store.View(ctx, func(tx store.Tx) error {
		var err error
		cur, _, err = getLease(ctx, tx, name)
		return err
	})
	return cur, err
}

// Acquire takes the lease name for holder when it is free, expired, or
// held under the same holder name (a restarted holder takes over from its
// previous incarnation, which Fence then refuses), with a new epoch. It
// reports false, with the current holding, when another holder's holding
// has not expired.
func (l *Leases) Acquire(ctx context.Context, name, holder string) (Lease, bool, error) {
	if name == "" || holder == "" {
		return Lease{}, false, fmt.Errorf("acquire lease: a lease needs a name and a holder")
	}
	var out Lease
	var ok bool
	err := l.Store.Update(ctx, func(tx store.Tx) error {
		now := l.Clock.Now().UTC()
		cur, _, err := getLease(ctx, tx, name)
		if err != nil {
			return err
		}
		if cur.Holder != holder && cur.Held(now) {
			out, ok = cur, false
			return nil
		}
		next := Lease{Name: name, Holder: holder, Epoch: cur.Epoch + 1, Acquired: now, Expiry: now.Add(l.ttl())}
		if err := putLease(ctx, tx, next); err != nil {
			return err
		}
		out, ok = next, true
		return nil
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("acquire lease %s: %w", name, err)
	}
	return out, ok, nil
}

// Renew extends a holding by the TTL from now. It fails with ErrLeaseLost
// when the holding has expired or another has replaced it: the holder must
// stop acting as one (and may Acquire again, under a new epoch).
func (l *Leases) Renew(ctx context.Context, held Lease) (Lease, error) {
	var out Lease
	err := l.Store.Update(ctx, func(tx store.Tx) error {
		now := l.Clock.Now().UTC()
		cur, err := current(ctx, tx, held)
		if err != nil {
			return err
		}
		if !cur.Held(now) {
			return fmt.Errorf("lease %s epoch %d expired at %s: %w", held.Name, held.Epoch, cur.Expiry.Format(time.RFC3339Nano), ErrLeaseLost)
		}
		cur.Expiry = now.Add(l.ttl())
		if err := putLease(ctx, tx, cur); err != nil {
			return err
		}
		out = cur
		return nil
	})
	if err != nil {
		return held, fmt.Errorf("renew lease: %w", err)
	}
	return out, nil
}

// Release ends a holding now, so that another holder may Acquire at once.
// The epoch stays stored, so that epochs keep growing. Releasing a holding
// that is already over fails with ErrLeaseLost and changes nothing.
func (l *Leases) Release(ctx context.Context, held Lease) error {
	err := l.Store.Update(ctx, func(tx store.Tx) error {
		now := l.Clock.Now().UTC()
		cur, err := current(ctx, tx, held)
		if err != nil {
			return err
		}
		if cur.Expiry.After(now) {
			cur.Expiry = now
		}
		return putLease(ctx, tx, cur)
	})
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// current reads the stored holding and checks that it is held's: same
// holder and epoch.
func current(ctx context.Context, tx store.Tx, held Lease) (Lease, error) {
	cur, _, err := getLease(ctx, tx, held.Name)
	if err != nil {
		return Lease{}, err
	}
	if cur.Holder != held.Holder || cur.Epoch != held.Epoch || held.Epoch == 0 {
		return Lease{}, fmt.Errorf("lease %s epoch %d of %s: now epoch %d of %s: %w",
			held.Name, held.Epoch, held.Holder, cur.Epoch, cur.Holder, ErrLeaseLost)
	}
	return cur, nil
}

// Fence checks, in the caller's transaction tx, that held is still the
// lease's current holding (same holder and epoch), and fails with
// ErrLeaseLost otherwise. A holder calls it in every transaction it writes
// as holder, so that once another holding has begun no such write
// commits. It does not look at the expiry: a holding that expired with no
// successor fences nothing, and no clock is compared across nodes.
func Fence(ctx context.Context, tx store.Tx, held Lease) error {
	if _, err := current(ctx, tx, held); err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	return nil
}

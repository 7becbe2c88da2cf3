package compute_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/compute"
	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// keeper is an authorizer that keeps decisions as authorization.Service
// does: by store index, with Unchanged false after any change. It counts
// the decisions it makes.
type keeper struct {
	mu      sync.Mutex
	denied  map[string]bool // action → denied to everyone
	index   uint64
	changed uint64
	calls   int
}

func (k *keeper) Decide(ctx context.Context, p identity.Principal, action, scope string) (authorization.Decision, error) {
	ok, _, err := k.AllowedAt(ctx, p, action, scope)
	if ok {
		return authorization.Decision{Allowed: true}, err
	}
	return authorization.Decision{MissingAction: action, Scope: scope}, err
}

func (k *keeper) AllowedAt(_ context.Context, _ identity.Principal, action, _ string) (bool, uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	return !k.denied[action], k.index, nil
}

func (k *keeper) Unchanged(index uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return index >= k.changed
}

// set denies (or allows again) action, as a committed role change.
func (k *keeper) set(action string, deny bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.denied[action] = deny
	k.index++
	k.changed = k.index
}

func (k *keeper) decisions() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls
}

// openWrite grants the fixture's admin an hour's Write access to disk and
// opens it.
func (f *fixture) openWrite(t testing.TB, disk resource.ID) (compute.GrantResult, *compute.DataAccess) {
	t.Helper()
	ctx := context.Background()
	g, err := f.svc.GrantAccess(ctx, f.admin, disk, compute.GrantInput{Access: compute.AccessWrite, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.svc.OpenAccess(ctx, g.Token)
	if err != nil {
		t.Fatal(err)
	}
	return g, a
}

// TestCreatorRightsKept: every use of a grant checks its creator's rights,
// but the decision is kept while no role assignment changes, so a stream of
// requests makes no new decision; a change is seen on the next request,
// for reads and for writes separately; a grant made to outlive its creator
// is not checked.
func TestCreatorRightsKept(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k := &keeper{denied: map[string]bool{}, index: 1}
	f.svc.Authz = k
	disk := f.emptyDisk(t, "rg", "d")
	g, a := f.openWrite(t, disk)
	if err := a.CheckWrite(ctx); err != nil {
		t.Fatal(err)
	}
	before := k.decisions()
	buf := make([]byte, 4096)
	for range 100 {
		if _, err := a.ReadAt(ctx, buf, 0); err != nil {
			t.Fatal(err)
		}
		if err := a.CheckWrite(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := k.decisions() - before; n != 0 {
		t.Fatalf("200 uses with unchanged roles made %d decisions, want 0", n)
	}

	k.set(compute.ActionDiskWrite, true)
	if err := a.CheckWrite(ctx); !errors.Is(err, compute.ErrCreatorDenied) || !errors.Is(err, compute.ErrAccessDenied) {
		t.Fatalf("write after the creator lost disks/write: %v", err)
	}
	if _, err := a.ReadAt(ctx, buf, 0); err != nil {
		t.Fatalf("read after the creator lost only disks/write: %v", err)
	}
	k.set(compute.ActionDiskGrant, true)
	if _, err := a.ReadAt(ctx, buf, 0); !errors.Is(err, compute.ErrCreatorDenied) {
		t.Fatalf("read after the creator lost beginGetAccess: %v", err)
	}
	if _, err := f.svc.OpenAccess(ctx, g.Token); !errors.Is(err, compute.ErrCreatorDenied) {
		t.Fatalf("open after the creator lost beginGetAccess: %v", err)
	}
	k.set(compute.ActionDiskGrant, false)
	k.set(compute.ActionDiskWrite, false)
	if err := a.CheckWrite(ctx); err != nil {
		t.Fatalf("write after the roles came back: %v", err)
	}

	standalone, err := f.svc.GrantAccess(ctx, f.admin, disk, compute.GrantInput{Access: compute.AccessWrite, Duration: time.Hour, OutlivesCreator: true})
	if err != nil {
		t.Fatal(err)
	}
	k.set(compute.ActionDiskGrant, true)
	k.set(compute.ActionDiskWrite, true)
	sa, err := f.svc.OpenAccess(ctx, standalone.Token)
	if err != nil {
		t.Fatalf("open a grant that outlives its creator: %v", err)
	}
	if err := sa.CheckWrite(ctx); err != nil {
		t.Fatalf("write through a grant that outlives its creator: %v", err)
	}
}

// allowedOnly hides the decision keeping of an authorizer, so that every
// use of a grant decides again (one store read).
type allowedOnly struct{ compute.Authorizer }

// BenchmarkGrantCheck is the cost of the per-request check of a Write
// grant (expiry, revocation, its creator's rights) with the real
// authorization service over SQLite: kept decisions against deciding on
// every request.
func BenchmarkGrantCheck(b *testing.B) {
	for _, kept := range []bool{true, false} {
		name := "kept"
		if !kept {
			name = "decided-each-time"
		}
		b.Run(name, func(b *testing.B) {
			f := newFixture(b)
			ctx := context.Background()
			authz := &authorization.Service{Store: f.svc.Store, Clock: f.clk}
			err := f.svc.Store.Update(ctx, func(tx store.Tx) error {
				_, err := authz.Assign(ctx, tx, f.admin.ID, "User", rbac.RoleOwner, "/subscriptions/"+f.sub, f.admin.ID)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			f.svc.Authz = authz
			if !kept {
				f.svc.Authz = allowedOnly{authz}
			}
			_, a := f.openWrite(b, f.emptyDisk(b, "rg", "d"))
			for b.Loop() {
				if err := a.CheckWrite(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package authorization_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/sqlite"
)

// countingStore counts the lists of role assignments, each one a rebuild
// of the policy, and the read transactions begun; a list waits for gate,
// if set.
type countingStore struct {
	store.Store
	lists, views atomic.Int64
	listed       atomic.Int64 // assignments read by lists in Updates
	gate         func()
}

type countingTx struct {
	store.Tx
	s *countingStore
}

func (c *countingStore) View(ctx context.Context, fn func(tx store.Tx) error) error {
	c.views.Add(1)
	return c.Store.View(ctx, func(tx store.Tx) error { return fn(countingTx{tx, c}) })
}

func (c *countingStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	return c.Store.Update(ctx, func(tx store.Tx) error { return fn(countingUpdateTx{tx, c}) })
}

type countingUpdateTx struct {
	store.Tx
	s *countingStore
}

func (c countingUpdateTx) List(ctx context.Context, q store.Query) ([]store.Object, error) {
	objs, err := c.Tx.List(ctx, q)
	if q.Kind == authorization.Kind {
		c.s.listed.Add(int64(len(objs)))
	}
	return objs, err
}

func (c countingTx) List(ctx context.Context, q store.Query) ([]store.Object, error) {
	if q.Kind == authorization.Kind {
		c.s.lists.Add(1)
		if c.s.gate != nil {
			c.s.gate()
		}
	}
	return c.Tx.List(ctx, q)
}

const (
	sub   = "/subscriptions/00000000-0000-4000-8000-0000000000aa"
	group = sub + "/resourceGroups/rg"
	alice = "00000000-0000-4000-8000-000000000001"
	bob   = "00000000-0000-4000-8000-000000000002"
)

func newService(t *testing.T) (*authorization.Service, *countingStore) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	return &authorization.Service{Store: cs, Clock: clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))}, cs
}

func allowed(t *testing.T, s *authorization.Service, principal, action, scope string) bool {
	t.Helper()
	ok, err := s.Allowed(context.Background(), identity.Principal{ID: principal}, action, scope)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestPolicyKeptAcrossOtherWrites: the policy is rebuilt when role
// assignments change, however they change, and not when anything else is
// written (it was rebuilt after every write, and under load with many
// assignments the rebuilds took most of the CPU).
func TestPolicyKeptAcrossOtherWrites(t *testing.T) {
	s, cs := newService(t)
	ctx := context.Background()
	const write = "Microsoft.Compute/disks/write"
	if err := cs.Update(ctx, func(tx store.Tx) error {
		_, err := s.Assign(ctx, tx, alice, "User", rbac.RoleContributor, group, alice)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !allowed(t, s, alice, write, group+"/providers/Microsoft.Compute/disks/d") || allowed(t, s, bob, write, group) {
		t.Fatal("policy after the first assignment")
	}
	built := cs.lists.Load()
	for i := range 20 {
		if err := cs.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Object{Kind: "Microsoft.Resources/resourceGroups", Key: group, Data: []byte{byte(i)}}, store.PutOptions{})
		}); err != nil {
			t.Fatal(err)
		}
		allowed(t, s, alice, write, group)
	}
	if n := cs.lists.Load() - built; n != 0 {
		t.Fatalf("20 writes of another kind rebuilt the policy %d times", n)
	}

	// A new assignment counts at once.
	var bobs rbac.Assignment
	if err := cs.Update(ctx, func(tx store.Tx) error {
		var err error
		bobs, err = s.Assign(ctx, tx, bob, "User", rbac.RoleReader, group, alice)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !allowed(t, s, bob, "Microsoft.Compute/disks/read", group) {
		t.Fatal("a new assignment is not seen")
	}
	// So does one deleted behind the service's back, as a group delete
	// deletes the records under its scope.
	if err := cs.Update(ctx, func(tx store.Tx) error {
		return tx.Delete(ctx, authorization.Kind, strings.ToLower(bobs.ID()))
	}); err != nil {
		t.Fatal(err)
	}
	if allowed(t, s, bob, "Microsoft.Compute/disks/read", group) {
		t.Fatal("a deleted assignment still allows")
	}
}

// TestPolicyRebuiltOnce: callers that find the policy stale at the same
// time wait for one rebuild instead of each making their own.
func TestPolicyRebuiltOnce(t *testing.T) {
	s, cs := newService(t)
	ctx := context.Background()
	if err := cs.Update(ctx, func(tx store.Tx) error {
		_, err := s.Assign(ctx, tx, alice, "User", rbac.RoleOwner, sub, alice)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The first rebuild waits until every caller is checking.
	const callers = 50
	cs.gate = func() {
		for cs.views.Load() < callers {
			time.Sleep(time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !allowed(t, s, alice, "Microsoft.Compute/disks/read", group) {
				t.Error("owner not allowed")
			}
		}()
	}
	wg.Wait()
	if n := cs.lists.Load(); n != 1 {
		t.Fatalf("%d concurrent checks built the policy %d times", callers, n)
	}
}

// TestAssignmentDuplicateCheckReadsItsScope: creating an assignment reads
// the assignments at its scope, not all of them, inside the write
// transaction (the writer is held meanwhile, and with it every write
// queued behind); a duplicate at the same scope, however spelled, is
// still refused.
func TestAssignmentDuplicateCheckReadsItsScope(t *testing.T) {
	s, cs := newService(t)
	ctx := context.Background()
	if err := cs.Update(ctx, func(tx store.Tx) error {
		for i := range 100 {
			p := fmt.Sprintf("00000000-0000-4000-8000-%012d", 100+i)
			if _, err := s.Assign(ctx, tx, p, "User", rbac.RoleReader, fmt.Sprintf("%s/resourceGroups/rg-%d", sub, i), alice); err != nil {
				return err
			}
		}
		_, err := s.Assign(ctx, tx, alice, "User", rbac.RoleReader, group, alice)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	put := func(principal, scope string) error {
		_, _, err := s.PutAssignment(ctx, scope, identity.NewGUID(), authorization.AssignmentInput{RoleDefinitionID: rbac.RoleReader,
			PrincipalID: principal, PrincipalType: "User"}, alice)
		return err
	}
	cs.listed.Store(0)
	if err := put(bob, group); err != nil {
		t.Fatal(err)
	}
	if n := cs.listed.Load(); n > 1 {
		t.Errorf("creating an assignment read %d assignments; at its scope there is 1", n)
	}
	for _, scope := range []string{group, strings.ToUpper(group), sub + "/resourcegroups/RG"} {
		if err := put(alice, scope); !resource.IsCode(err, "RoleAssignmentExists") {
			t.Errorf("duplicate at %s: %v, want RoleAssignmentExists", scope, err)
		}
	}
}

// TestDecisionsKeptUntilAssignmentsChange: a decision from AllowedAt holds
// (Unchanged) until an assignment is written; one made while that write
// has not committed (on the old assignments) is never trusted; one made
// after the commit is.
func TestDecisionsKeptUntilAssignmentsChange(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := &authorization.Service{Store: st, Clock: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	p := identity.Principal{ID: identity.NewGUID()}
	const sub = "/subscriptions/5b3e9a2c-1d4f-4e6a-8b7c-9d0e1f2a3b4c"
	const action = "Microsoft.Compute/disks/write"
	allowed := func() (bool, uint64) {
		t.Helper()
		ok, idx, err := s.AllowedAt(ctx, p, action, sub+"/resourceGroups/rg")
		if err != nil {
			t.Fatal(err)
		}
		return ok, idx
	}
	ok, idx := allowed()
	if ok || !s.Unchanged(idx) {
		t.Fatalf("no assignment: allowed %v, unchanged %v", ok, s.Unchanged(idx))
	}
	var during uint64
	var a rbac.Assignment
	err = st.Update(ctx, func(tx store.Tx) error {
		var err error
		if a, err = s.Assign(ctx, tx, p.ID, "User", rbac.RoleContributor, sub, "t"); err != nil {
			return err
		}
		// A decision taken now still sees the old assignments.
		var ok bool
		if ok, during = allowed(); ok {
			t.Error("an uncommitted assignment was seen")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Unchanged(idx) || s.Unchanged(during) {
		t.Fatalf("decisions made before the commit still trusted (%d, %d)", idx, during)
	}
	ok, idx = allowed()
	if !ok || !s.Unchanged(idx) {
		t.Fatalf("after the commit: allowed %v, unchanged %v", ok, s.Unchanged(idx))
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		_, err := s.Delete(ctx, tx, sub, a.Name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Unchanged(idx) {
		t.Fatal("a decision survived the removal of its assignment")
	}
	if ok, _ = allowed(); ok {
		t.Fatal("allowed after the assignment was removed")
	}
}

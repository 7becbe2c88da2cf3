package authorization_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/rbac"
	"coffer/internal/store"
	"coffer/internal/store/sqlite"
)

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

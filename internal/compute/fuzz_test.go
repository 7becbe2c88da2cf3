package compute_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"coffer/internal/compute"
	"coffer/internal/resource"
)

// FuzzOpenAccess feeds arbitrary grant tokens (SAS signatures and NBD
// export names) to OpenAccess. It is seeded with live Read and Write grants
// on a disk, a Read grant on a snapshot and a revoked grant. A token is
// refused with ErrUnknownGrant or ErrAccessDenied, or it opens exactly what
// one live grant gives: the same resource, access and expiry; never more
// (a read grant turned into a write one), never a revoked grant.
func FuzzOpenAccess(f *testing.F) {
	fx := newFixture(f)
	ctx := context.Background()
	disk := fx.emptyDisk(f, "rg", "d")
	gone := fx.emptyDisk(f, "rg", "revoked")
	snap, err := fx.svc.SnapshotDisk(ctx, fx.admin, compute.SnapshotID(fx.sub, "rg", "s"), disk, "local", true, nil)
	if err != nil {
		f.Fatal(err)
	}
	type grant struct {
		resource string
		access   compute.Access
		expires  time.Time
	}
	var live []grant
	issue := func(id resource.ID, acc compute.Access) string {
		g, err := fx.svc.GrantAccess(ctx, fx.admin, id, compute.GrantInput{Access: acc, Duration: time.Hour})
		if err != nil {
			f.Fatal(err)
		}
		live = append(live, grant{id.String(), acc, g.Grant.Expires})
		return g.Token
	}
	f.Add(issue(disk, compute.AccessRead))
	f.Add(issue(disk, compute.AccessWrite))
	f.Add(issue(resource.MustParse(snap.ID), compute.AccessRead))
	revoked, err := fx.svc.GrantAccess(ctx, fx.admin, gone, compute.GrantInput{Access: compute.AccessWrite, Duration: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	if err := fx.svc.RevokeAccess(ctx, gone); err != nil {
		f.Fatal(err)
	}
	f.Add(revoked.Token)
	f.Add("")
	f.Add("AYhO_M1t_kU2j9cIPMxAh2sAAAAAawJK4HJk1bMm-g-ioqLyEOmlZ0_Hj7Ox5zgAH66WkAxDQV_zozE")
	f.Fuzz(func(t *testing.T, tok string) {
		a, err := fx.svc.OpenAccess(ctx, tok)
		if err != nil {
			if !errors.Is(err, compute.ErrUnknownGrant) && !errors.Is(err, compute.ErrAccessDenied) {
				t.Fatalf("token %q: %v", tok, err)
			}
			return
		}
		got := grant{a.ResourceID, a.Access, a.Expires}
		for _, g := range live {
			if g == got {
				if a.Writable() != (g.access == compute.AccessWrite) {
					t.Fatalf("token %q opens %+v writable=%v", tok, got, a.Writable())
				}
				return
			}
		}
		t.Fatalf("token %q opened %+v, which no live grant gives", tok, got)
	})
}

// FuzzParseID: a disk or snapshot ID that ParseID accepts is of that type
// with a valid name, and formats to an ID that parses to the same.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d",
		"/subscriptions/s/resourcegroups/g/providers/microsoft.compute/SNAPSHOTS/s.1", "/subscriptions/s/providers/Microsoft.Compute/disks/d",
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d/extra/x", "disks/d", "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/-"} {
		f.Add(compute.TypeDisks, s)
		f.Add(compute.TypeSnapshots, s)
	}
	f.Fuzz(func(t *testing.T, typ, s string) {
		id, err := compute.ParseID(typ, s)
		if err != nil {
			if resource.AsError(err) == nil {
				t.Fatalf("ParseID(%q, %q): %v is not an ARM error", typ, s, err)
			}
			return
		}
		if len(id.Types) != 1 || id.Types[0] != typ || id.ResourceGroup == "" {
			t.Fatalf("ParseID(%q, %q) = %+v", typ, s, id)
		}
		again, err := compute.ParseID(typ, id.String())
		if err != nil || again.Key() != id.Key() {
			t.Fatalf("ParseID(%q, %q) = %s, which parses as %+v, %v", typ, s, id, again, err)
		}
	})
}

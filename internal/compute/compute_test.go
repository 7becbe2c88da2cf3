package compute_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"coffer/internal/blobstore/mem"
	"coffer/internal/blockdev"
	"coffer/internal/chunkstore"
	"coffer/internal/clock"
	"coffer/internal/compute"
	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/sqlite"
	"coffer/internal/tenant"
)

type fixture struct {
	svc   *compute.Service
	st    store.Store
	clk   *clock.Fake
	sub   string
	admin identity.Principal
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newFixtureOn(t, st)
}

// newFixtureOn is newFixture on the metadata store st.
func newFixtureOn(t testing.TB, st store.Store) *fixture {
	t.Helper()
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	blobs := mem.New()
	chunks, err := chunkstore.New(blobs, chunkstore.NewMemIndex(), chunkstore.Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := blockdev.Open(ctx, t.TempDir(), chunks, blobs, blockdev.Options{Clock: clk, Catalogue: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	ten := &tenant.Service{Store: st, Clock: clk, Regions: []string{"local"}}
	svc := &compute.Service{Store: st, Tenant: ten, Engine: eng, Clock: clk, GrantKey: bytes.Repeat([]byte{1}, 32)}
	ten.Cleaners = append(ten.Cleaners, svc.Cleaner)
	t.Cleanup(svc.Close)
	f := &fixture{svc: svc, st: st, clk: clk, sub: identity.NewGUID(), admin: identity.Principal{ID: identity.NewGUID(), Kind: identity.User}}
	err = st.Update(ctx, func(tx store.Tx) error {
		if _, err := ten.CreateSubscription(ctx, tx, f.sub, "s", f.admin.ID); err != nil {
			return err
		}
		for _, g := range []string{"rg", "other"} {
			if _, _, err := ten.PutGroup(ctx, tx, resource.GroupID(f.sub, g), tenant.PutGroupInput{Location: "local"}, "t", "User"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// emptyDisk creates an empty 1 GiB disk rg/name as the fixture's admin.
// writtenDisk makes an empty disk and writes data into its volume at off;
// it returns the disk's record.
func (f *fixture) writtenDisk(t testing.TB, rg, name string, data []byte, off int64) compute.Disk {
	t.Helper()
	ctx := context.Background()
	d, err := f.svc.GetDisk(ctx, f.emptyDisk(t, rg, name))
	if err != nil {
		t.Fatal(err)
	}
	vol, err := f.svc.Engine.OpenVolume(ctx, d.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vol.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) emptyDisk(t testing.TB, rg, name string) resource.ID {
	t.Helper()
	id := compute.DiskID(f.sub, rg, name)
	if _, err := f.svc.CreateDisk(context.Background(), f.admin, id, compute.DiskInput{Location: "local", DiskSizeGB: 1,
		CreationData: compute.CreationData{CreateOption: "Empty"}}); err != nil {
		t.Fatal(err)
	}
	return id
}

func code(err error) string {
	if e := resource.AsError(err); e != nil {
		return e.Code
	}
	return ""
}

func TestIncrementalSnapshotLimit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	disk := f.emptyDisk(t, "rg", "d")
	for i := range compute.MaxIncrementalSnapshots {
		id := compute.SnapshotID(f.sub, "other", "s"+string(rune('a'+i%26))+itoa(i))
		if _, err := f.svc.SnapshotDisk(ctx, f.admin, id, disk, "local", true, nil); err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
	}
	_, err := f.svc.SnapshotDisk(ctx, f.admin, compute.SnapshotID(f.sub, "rg", "one-too-many"), disk, "local", true, nil)
	if code(err) != "OperationNotAllowed" {
		t.Fatalf("snapshot 501: %v", err)
	}
	// A full snapshot does not count against the limit.
	if _, err := f.svc.SnapshotDisk(ctx, f.admin, compute.SnapshotID(f.sub, "rg", "full"), disk, "local", false, nil); err != nil {
		t.Fatalf("full snapshot: %v", err)
	}
	// Deleting the group that holds them frees the quota and their data.
	if err := f.svc.Tenant.DeleteGroupContents(ctx, resource.GroupID(f.sub, "other")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SnapshotDisk(ctx, f.admin, compute.SnapshotID(f.sub, "rg", "after"), disk, "local", true, nil); err != nil {
		t.Fatalf("snapshot after cleanup: %v", err)
	}
	left, err := f.svc.Engine.ListSnapshots(ctx, "")
	if err != nil || len(left) != 2 {
		t.Fatalf("engine snapshots after cleanup: %d %v", len(left), err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestCrossSubscriptionIncremental(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	other := identity.NewGUID()
	err := f.svc.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := f.svc.Tenant.CreateSubscription(ctx, tx, other, "o", f.admin.ID); err != nil {
			return err
		}
		_, _, err := f.svc.Tenant.PutGroup(ctx, tx, resource.GroupID(other, "rg"), tenant.PutGroupInput{Location: "local"}, "t", "User")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	disk := f.emptyDisk(t, "rg", "d")
	_, err = f.svc.SnapshotDisk(ctx, f.admin, compute.SnapshotID(other, "rg", "s"), disk, "local", true, nil)
	if e := resource.AsError(err); e == nil || e.Kind != resource.KindBadRequest || e.Code != "BadRequest" {
		t.Fatalf("cross-subscription incremental: %v", err)
	}
	// Another group of the same subscription is fine.
	if _, err := f.svc.SnapshotDisk(ctx, f.admin, compute.SnapshotID(f.sub, "other", "s"), disk, "local", true, nil); err != nil {
		t.Fatal(err)
	}
}

func TestGrantExpiryAndRevocation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	disk := f.emptyDisk(t, "rg", "d")
	g, err := f.svc.GrantAccess(ctx, f.admin, disk, compute.GrantInput{Access: compute.AccessWrite, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.svc.OpenAccess(ctx, g.Token)
	if err != nil || !a.Writable() {
		t.Fatalf("open: %v", err)
	}
	if _, err := f.svc.DeleteDisk(ctx, disk); code(err) != "OperationNotAllowed" {
		t.Fatalf("delete exported disk: %v", err)
	}
	if err := a.CheckWrite(ctx); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Minute)
	if err := a.Check(ctx); !errors.Is(err, compute.ErrAccessDenied) {
		t.Fatalf("expired grant on an open access: %v", err)
	}
	if _, err := f.svc.OpenAccess(ctx, g.Token); !errors.Is(err, compute.ErrAccessDenied) {
		t.Fatalf("open expired: %v", err)
	}
	d, err := f.svc.GetDisk(ctx, disk)
	if err != nil || d.State(f.clk.Now()) != compute.DiskUnattached {
		t.Fatalf("state after expiry: %v %v", d.State(f.clk.Now()), err)
	}
	// Revocation reaches an access opened before it.
	g2, err := f.svc.GrantAccess(ctx, f.admin, disk, compute.GrantInput{Access: compute.AccessRead, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := f.svc.OpenAccess(ctx, g2.Token)
	if err != nil || a2.Writable() {
		t.Fatalf("open read grant: %v", err)
	}
	if err := a2.CheckWrite(ctx); !errors.Is(err, compute.ErrReadOnly) {
		t.Fatalf("write through a read grant: %v", err)
	}
	if err := f.svc.RevokeAccess(ctx, disk); err != nil {
		t.Fatal(err)
	}
	if err := a2.Check(ctx); !errors.Is(err, compute.ErrAccessDenied) {
		t.Fatalf("revoked grant on an open access: %v", err)
	}
	if _, err := f.svc.OpenAccess(ctx, g2.Token); !errors.Is(err, compute.ErrAccessDenied) {
		t.Fatalf("open revoked: %v", err)
	}
	if _, err := f.svc.OpenAccess(ctx, "garbage"); !errors.Is(err, compute.ErrUnknownGrant) {
		t.Fatalf("open garbage: %v", err)
	}
	if ok, err := f.svc.DeleteDisk(ctx, disk); err != nil || !ok {
		t.Fatalf("delete: %v %v", ok, err)
	}
}

// failingCommit is a store whose read-write transactions all fail at
// commit, after their function ran (a full disk, a lost connection).
type failingCommit struct{ store.Store }

var errCommit = errors.New("commit failed")

func (s failingCommit) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errCommit // roll back what fn wrote
	})
	return err
}

// A resize whose record cannot be stored leaves the disk exactly as it
// was: the record (rolled back) and the volume (grown, then undone).
func TestResizeUndoneWhenRecordFails(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.emptyDisk(t, "rg", "d")
	d, err := f.svc.GetDisk(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	good := f.svc.Store
	f.svc.Store = failingCommit{good}
	if _, err := f.svc.UpdateDisk(ctx, f.admin, id, compute.DiskUpdate{DiskSizeGB: 2}); !errors.Is(err, errCommit) {
		t.Fatalf("resize with a failing commit: %v", err)
	}
	f.svc.Store = good
	after, err := f.svc.GetDisk(ctx, id)
	if err != nil || after.DiskSizeGB != 1 || after.DiskSizeBytes != compute.GiB {
		t.Fatalf("record after the failed resize: %+v, %v", after, err)
	}
	vol, err := f.svc.Engine.OpenVolume(ctx, d.UniqueID)
	if err != nil {
		t.Fatal(err)
	}
	if vol.Size() != compute.GiB {
		t.Fatalf("volume after the failed resize: %d bytes, want %d", vol.Size(), compute.GiB)
	}
	if _, err := f.svc.UpdateDisk(ctx, f.admin, id, compute.DiskUpdate{DiskSizeGB: 2}); err != nil {
		t.Fatalf("resize afterwards: %v", err)
	}
	if vol.Size() != 2*compute.GiB {
		t.Fatalf("volume after the resize: %d bytes", vol.Size())
	}
}

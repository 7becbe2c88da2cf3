package compute_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
	"coffer/internal/store/sqlite"
	"coffer/internal/store/storetest"
)

// eachStore runs test on SQLite and, when its server programs are here,
// on PostgreSQL.
func eachStore(t *testing.T, test func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, st)
	})
	t.Run("postgres", func(t *testing.T) {
		st, err := postgres.Open(context.Background(), pgtest.Start(t).NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		test(t, st)
	})
}

// hookStore runs before ahead of its at-th Update (1-based), once.
type hookStore struct {
	store.Store
	at, updates int
	before      func()
}

func (h *hookStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	h.updates++
	if h.updates == h.at && h.before != nil {
		h.before()
	}
	return h.Store.Update(ctx, fn)
}

// TestFailStranded: node a dies while it makes a disk (between writing
// its record and recording its volume made, as a PUT's process killed
// there leaves it) and before it takes a snapshot it recorded (a backup's,
// say). Node b's sweep (compute.Service.FailStranded) leaves both pending
// within the grace, and when a came back within it; past the grace it
// fails both with 503 NodeUnavailable naming node a, each once (a second
// sweep fails nothing), never through a refusing fence, and never one a
// durable operation finishes (Finishing). A node that comes back too late
// and ends a creation the sweep failed meanwhile (a snapshot taken, a
// volume made) leaves it Failed: on the old code the disk and the
// snapshot stayed Updating and Creating for ever, and a late finish wrote
// Succeeded over a Failed record. Time is a fake clock.
func TestFailStranded(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		a := newFixtureOn(t, st)
		asNode(a.svc, "a")
		b := a.otherNode(t, "b")
		clk := a.clk
		const grace = time.Minute
		deadline := cluster.DefaultNodeTimeout + grace
		reg := &cluster.Registry{Store: st, Clock: clk}
		na, err := reg.Register(ctx, cluster.Node{Name: "a", Incarnation: "a-1"})
		if err != nil {
			t.Fatal(err)
		}
		nb, err := reg.Register(ctx, cluster.Node{Name: "b", Incarnation: "b-1"})
		if err != nil {
			t.Fatal(err)
		}
		gone := func(ctx context.Context, tx store.Tx, uniqueID, what string, since time.Time) (*resource.Error, error) {
			home, err := cluster.VolumeHome(ctx, tx, uniqueID)
			if err != nil || home == "" || home == "b" {
				return nil, err
			}
			cause, err := reg.GoneTx(ctx, tx, home, what, clk.Now(), since, grace)
			if err != nil || cause == nil {
				return nil, err
			}
			return resource.AsError(cause), nil
		}
		sweep := func(want int) {
			t.Helper()
			if _, err := reg.Beat(ctx, nb, 0); err != nil { // the sweeper is live
				t.Fatal(err)
			}
			got, err := b.FailStranded(ctx, gone, nil)
			if err != nil || got != want {
				t.Fatalf("b's sweep at %s failed %d creations (%v), want %d", clk.Now().Sub(na.Started), got, err, want)
			}
		}
		diskState := func(id resource.ID) compute.Disk {
			t.Helper()
			d, err := b.GetDisk(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
		snapState := func(id resource.ID) compute.Snapshot {
			t.Helper()
			sn, err := b.GetSnapshot(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			return sn
		}
		failedByA := func(what string, state string, e *resource.Error) {
			t.Helper()
			if state != compute.StateFailed || e == nil || e.Code != cluster.CodeNodeUnavailable || !strings.Contains(e.Message, "node 'a'") {
				t.Fatalf("%s: %s, %+v; want %s with %s naming node 'a'", what, state, e, compute.StateFailed, cluster.CodeNodeUnavailable)
			}
		}

		// a makes a disk and dies after its record, before recording the
		// volume made; and records a snapshot it does not take.
		src := a.emptyDisk(t, "rg", "src")
		d1 := compute.DiskID(a.sub, "rg", "d1")
		a.svc.Store = &dyingStore{Store: st, dieAt: 2}
		if _, err := a.svc.CreateDisk(ctx, a.admin, d1, compute.DiskInput{Location: "local", DiskSizeGB: 1,
			CreationData: compute.CreationData{CreateOption: compute.OptionEmpty}}); !errors.Is(err, errStopped) {
			t.Fatalf("the PUT a dies in: %v", err)
		}
		a.svc.Store = st
		s1 := compute.SnapshotID(a.sub, "rg", "s1")
		if _, _, _, err := a.svc.StartSnapshot(ctx, a.admin, s1, compute.SnapshotInput{Location: "local", Incremental: true,
			CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: src.String()}}); err != nil {
			t.Fatal(err)
		}
		if d := diskState(d1); d.ProvisioningState != compute.StateUpdating {
			t.Fatalf("the disk a died making: %s", d.ProvisioningState)
		}

		// Within the grace nothing fails; a back within it keeps its work.
		clk.Advance(deadline - time.Second)
		sweep(0)
		if _, err := reg.Beat(ctx, na, 0); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Second)
		sweep(0)

		// Past the grace since a's last beat.
		clk.Advance(deadline)
		refuse := errors.New("the scheduler lease passed to another node")
		if _, err := b.FailStranded(ctx, gone, func(context.Context, store.Tx) error { return refuse }); !errors.Is(err, refuse) {
			t.Fatalf("a sweep whose fence refuses: %v, want %v", err, refuse)
		}
		if d, sn := diskState(d1), snapState(s1); d.ProvisioningState != compute.StateUpdating || sn.ProvisioningState != compute.StateCreating {
			t.Fatalf("after a refused sweep: disk %s, snapshot %s", d.ProvisioningState, sn.ProvisioningState)
		}
		b.Finishing = func(context.Context) (map[string]bool, error) {
			return map[string]bool{strings.ToLower(d1.String()): true}, nil
		}
		sweep(1) // the snapshot: the disk's operation fails it
		b.Finishing = nil
		sweep(1) // the disk
		sweep(0) // each once
		failedByA("the disk a died making", diskState(d1).ProvisioningState, diskState(d1).FailedError)
		failedByA("the snapshot a did not take", snapState(s1).ProvisioningState, snapState(s1).FailedError)

		// a, back too late, takes a snapshot the sweep failed while it
		// took it: the snapshot stays Failed.
		s2 := compute.SnapshotID(a.sub, "rg", "s2")
		if _, _, _, err := a.svc.StartSnapshot(ctx, a.admin, s2, compute.SnapshotInput{Location: "local", Incremental: true,
			CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: src.String()}}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(deadline)
		a.svc.Store = &hookStore{Store: st, at: 1, before: func() { sweep(1) }}
		_, err = a.svc.FinishSnapshot(ctx, s2)
		a.svc.Store = st
		if code(err) != cluster.CodeNodeUnavailable {
			t.Errorf("a's late finish of the snapshot: %v, want %s", err, cluster.CodeNodeUnavailable)
		}
		failedByA("the snapshot a took too late", snapState(s2).ProvisioningState, snapState(s2).FailedError)

		// ... and makes a disk's volume the sweep failed meanwhile.
		d2 := compute.DiskID(a.sub, "rg", "d2")
		a.svc.Store = &hookStore{Store: st, at: 2, before: func() { clk.Advance(deadline); sweep(1) }}
		_, err = a.svc.CreateDisk(ctx, a.admin, d2, compute.DiskInput{Location: "local", DiskSizeGB: 1,
			CreationData: compute.CreationData{CreateOption: compute.OptionEmpty}})
		a.svc.Store = st
		if code(err) != cluster.CodeNodeUnavailable {
			t.Errorf("a's late end of the disk: %v, want %s", err, cluster.CodeNodeUnavailable)
		}
		failedByA("the disk a made too late", diskState(d2).ProvisioningState, diskState(d2).FailedError)
	})
}

// TestFailStrandedReadsOnlyChanges: the sweep runs every few seconds for
// as long as a node is gone, and it lists the disk and snapshot records
// only when one of those kinds changed since its last list; a creation
// left pending after a sweep that found none is still failed at the next
// sweep. On the old code every sweep listed both kinds.
func TestFailStrandedReadsOnlyChanges(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		a := newFixtureOn(t, st)
		asNode(a.svc, "a")
		b := a.otherNode(t, "b")
		counter := storetest.CountLists(st)
		b.Store = counter
		var goneNow bool
		gone := func(ctx context.Context, tx store.Tx, uniqueID, what string, since time.Time) (*resource.Error, error) {
			if !goneNow {
				return nil, nil
			}
			return &resource.Error{Kind: resource.KindUnavailable, Code: cluster.CodeNodeUnavailable, Message: what + ": node 'a' is gone"}, nil
		}
		sweep := func(wantFailed, wantLists int) {
			t.Helper()
			counter.Reset()
			got, err := b.FailStranded(ctx, gone, nil)
			if lists := counter.Lists(compute.KindDisk, compute.KindSnapshot); err != nil || got != wantFailed || lists != wantLists {
				t.Fatalf("sweep: failed %d (%v) with %d lists of disks and snapshots, want %d failed with %d lists",
					got, err, lists, wantFailed, wantLists)
			}
		}
		src := a.emptyDisk(t, "rg", "src")
		sweep(0, 2)
		sweep(0, 0) // nothing changed
		s1 := compute.SnapshotID(a.sub, "rg", "s1")
		if _, _, _, err := a.svc.StartSnapshot(ctx, a.admin, s1, compute.SnapshotInput{Location: "local", Incremental: true,
			CreationData: compute.CreationData{CreateOption: compute.OptionCopy, SourceResourceID: src.String()}}); err != nil {
			t.Fatal(err)
		}
		sweep(0, 2) // a snapshot pending, its node not gone yet
		sweep(0, 0)
		goneNow = true
		sweep(1, 0) // the list read before fails it
		sweep(0, 2) // the failure changed the snapshots
		if sn, err := b.GetSnapshot(ctx, s1); err != nil || sn.ProvisioningState != compute.StateFailed {
			t.Fatalf("the snapshot a did not take: %+v, %v", sn.ProvisioningState, err)
		}
	})
}

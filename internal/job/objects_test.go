package job

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"coffer/internal/store"
	"coffer/internal/store/sqlite"
)

var objT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// readCountingTx counts the task objects a transaction reads.
type readCountingTx struct {
	store.Tx
	tasksRead int
}

func (c *readCountingTx) Get(ctx context.Context, kind, key string) (store.Object, error) {
	o, err := c.Tx.Get(ctx, kind, key)
	if kind == kindTask && err == nil {
		c.tasksRead++
	}
	return o, err
}

func (c *readCountingTx) List(ctx context.Context, q store.Query) ([]store.Object, error) {
	objs, err := c.Tx.List(ctx, q)
	for _, o := range objs {
		if o.Kind == kindTask {
			c.tasksRead++
		}
	}
	return objs, err
}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// diskTarget is the target of disk i; disk 1's ID is a prefix of disk 10's
// and 1x's, which must not be its tasks.
func diskTarget(i int) string {
	return fmt.Sprintf("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d%d", i)
}

func newTask(id, target string, age time.Duration) Task {
	return Task{ID: id, Type: "backup", Target: target, State: StatePending, MaxAttempts: 3, CreatedAt: objT0.Add(age)}
}

// listTarget lists target's tasks in a View and returns their IDs and how
// many task objects the View read.
func listTarget(t *testing.T, st store.Store, target string) (ids []string, read int) {
	t.Helper()
	err := st.View(context.Background(), func(tx store.Tx) error {
		c := &readCountingTx{Tx: tx}
		ts, err := Objects{Store: st}.List(context.Background(), c, target)
		for _, t := range ts {
			ids = append(ids, t.ID)
		}
		read = c.tasksRead
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids, read
}

// TestObjectsListTargetReadsOnlyItsTasks: on SQLite, with 60 tasks of 20
// disks queued, List(target) returns that disk's tasks, oldest first and
// matched case-insensitively, and reads no other task; a task's entry
// moves with a Replace that changes its target and goes with Finish.
// Before the job.target index, List read all 60 tasks.
func TestObjectsListTargetReadsOnlyItsTasks(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	b := Objects{Store: st}
	if err := st.Update(ctx, func(tx store.Tx) error {
		for i := range 60 {
			// Disk 1 gets tasks t0, t20, t40, inserted newest first.
			n := 59 - i
			if err := b.Insert(ctx, tx, newTask(fmt.Sprintf("T%02d", n), diskTarget(n%20), time.Duration(n)*time.Minute)); err != nil {
				return err
			}
		}
		return b.Insert(ctx, tx, newTask("untargeted", "", 0))
	}); err != nil {
		t.Fatal(err)
	}

	ids, read := listTarget(t, st, diskTarget(1))
	if want := []string{"T01", "T21", "T41"}; !slices.Equal(ids, want) {
		t.Fatalf("List(disk 1) = %v, want %v", ids, want)
	}
	if read != 3 {
		t.Errorf("List(disk 1) read %d tasks, want only its 3", read)
	}
	if ids, _ := listTarget(t, st, strings.ToUpper(diskTarget(1))); len(ids) != 3 {
		t.Errorf("List(DISK 1) = %v, want disk 1's 3 tasks", ids)
	}
	if ids, _ := listTarget(t, st, diskTarget(99)); len(ids) != 0 {
		t.Errorf("List(disk 99) = %v, want none", ids)
	}
	if ids, _ := listTarget(t, st, ""); len(ids) != 61 {
		t.Errorf("List(\"\") returned %d tasks, want 61", len(ids))
	}

	// T21 moves to disk 99; T41 finishes.
	if err := st.Update(ctx, func(tx store.Tx) error {
		task, err := b.Get(ctx, tx, "t21")
		if err != nil {
			return err
		}
		task.Target = diskTarget(99)
		if err := b.Replace(ctx, tx, task); err != nil {
			return err
		}
		return b.Finish(ctx, tx, "T41", objT0)
	}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := listTarget(t, st, diskTarget(1)); !slices.Equal(ids, []string{"T01"}) {
		t.Errorf("List(disk 1) after the move and the finish = %v, want [T01]", ids)
	}
	if ids, _ := listTarget(t, st, diskTarget(99)); !slices.Equal(ids, []string{"T21"}) {
		t.Errorf("List(disk 99) after the move = %v, want [T21]", ids)
	}
	err := st.View(ctx, func(tx store.Tx) error {
		entries, err := tx.List(ctx, store.Query{Kind: kindTarget, Prefix: targetIndexMarker + "/"})
		if err != nil {
			return err
		}
		if len(entries) != 59 { // 60 targeted tasks, one finished
			t.Errorf("%d target entries, want 59", len(entries))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestObjectsTargetIndexUpgrade: a queue that an earlier version wrote
// (tasks without entries, no marker) answers List(target) by a scan, and
// the first Insert (or Claim) indexes the tasks already queued, after which
// List(target) reads only that target's tasks, old ones included, and
// finishing an old task removes its entry.
func TestObjectsTargetIndexUpgrade(t *testing.T) {
	ctx := context.Background()
	for _, first := range []string{"insert", "claim"} {
		t.Run(first, func(t *testing.T) {
			st := openSQLite(t)
			b := Objects{Store: st}
			// What the earlier version wrote: the tasks alone.
			if err := st.Update(ctx, func(tx store.Tx) error {
				for i := range 10 {
					if err := putTask(ctx, tx, newTask(fmt.Sprintf("old%d", i), diskTarget(i%5), time.Duration(i)*time.Minute), store.PutOptions{CreateOnly: true}); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			ids, read := listTarget(t, st, diskTarget(2))
			if !slices.Equal(ids, []string{"old2", "old7"}) {
				t.Fatalf("List(disk 2) before the upgrade = %v, want [old2 old7]", ids)
			}
			if read != 10 {
				t.Errorf("List(disk 2) before the upgrade read %d tasks, want a scan of 10", read)
			}

			switch first {
			case "insert":
				if err := st.Update(ctx, func(tx store.Tx) error {
					return b.Insert(ctx, tx, newTask("new", diskTarget(2), time.Hour))
				}); err != nil {
					t.Fatal(err)
				}
			case "claim":
				got, ok, err := b.Claim(ctx, "node/w", objT0.Add(2*time.Hour), time.Minute)
				if err != nil || !ok || got.ID != "old0" {
					t.Fatalf("Claim = %s %v %v, want old0", got.ID, ok, err)
				}
			}

			want := []string{"old2", "old7"}
			if first == "insert" {
				want = append(want, "new")
			}
			ids, read = listTarget(t, st, diskTarget(2))
			if !slices.Equal(ids, want) {
				t.Fatalf("List(disk 2) after the upgrade = %v, want %v", ids, want)
			}
			if read != len(want) {
				t.Errorf("List(disk 2) after the upgrade read %d tasks, want its %d", read, len(want))
			}
			if err := st.Update(ctx, func(tx store.Tx) error {
				return b.Finish(ctx, tx, "old7", objT0)
			}); err != nil {
				t.Fatal(err)
			}
			want = slices.DeleteFunc(want, func(id string) bool { return id == "old7" })
			if ids, _ := listTarget(t, st, diskTarget(2)); !slices.Equal(ids, want) {
				t.Errorf("List(disk 2) after finishing old7 = %v, want %v", ids, want)
			}
		})
	}
}

// TestObjectsListTargetPages: a target's entries are read in pages; 70
// tasks of one disk, between those of disks whose keys sort around it,
// come back all and only.
func TestObjectsListTargetPages(t *testing.T) {
	ctx := context.Background()
	st := openSQLite(t)
	b := Objects{Store: st}
	if err := st.Update(ctx, func(tx store.Tx) error {
		for i := range 70 {
			for _, d := range []int{1, 2, 10} {
				if err := b.Insert(ctx, tx, newTask(fmt.Sprintf("d%d-%02d", d, i), diskTarget(d), time.Duration(i)*time.Second)); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ids, read := listTarget(t, st, diskTarget(1))
	if len(ids) != 70 || read != 70 || ids[0] != "d1-00" || ids[69] != "d1-69" {
		t.Errorf("List(disk 1): %d tasks (%v … ), %d read, want d1-00 … d1-69", len(ids), ids[:min(3, len(ids))], read)
	}
}

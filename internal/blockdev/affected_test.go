package blockdev

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"coffer/internal/chunk"
)

func TestSnapshotsReferencing(t *testing.T) {
	ctx := context.Background()
	env := newTestEnv(t, Options{BlockSize: 4 << 10})
	v, _ := env.e.CreateVolume(ctx, "vol", 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	shared := make([]byte, 4<<10)
	for i := range shared {
		shared[i] = byte(rng.Uint32())
	}
	if _, err := v.WriteAt(shared, 0); err != nil { // block 0: in every snapshot
		t.Fatal(err)
	}
	s1, _ := env.e.Snapshot(ctx, "vol", "s1")
	late := make([]byte, 4<<10)
	for i := range late {
		late[i] = byte(rng.Uint32())
	}
	if _, err := v.WriteAt(late, 8<<10); err != nil { // block 2: only from s2 on
		t.Fatal(err)
	}
	s2, _ := env.e.Snapshot(ctx, "vol", "s2")
	if _, err := v.WriteAt(make([]byte, 4<<10), 8<<10); err != nil { // zero block 2 again
		t.Fatal(err)
	}
	s3, _ := env.e.Snapshot(ctx, "vol", "s3")

	idShared, idLate, unknown := chunk.Hash(shared), chunk.Hash(late), chunk.Hash([]byte("nobody"))
	got, err := env.e.SnapshotsReferencing(ctx, []chunk.ID{idShared, idLate, unknown, s2.Record})
	if err != nil {
		t.Fatal(err)
	}
	if w := []string{s1.ID, s2.ID, s3.ID}; !slices.Equal(got[idShared], w) {
		t.Errorf("shared block referenced by %v, want %v", got[idShared], w)
	}
	if w := []string{s2.ID}; !slices.Equal(got[idLate], w) {
		t.Errorf("late block referenced by %v, want %v", got[idLate], w)
	}
	if w := []string{s2.ID}; !slices.Equal(got[s2.Record], w) {
		t.Errorf("s2's record referenced by %v, want %v", got[s2.Record], w)
	}
	if len(got[unknown]) != 0 {
		t.Errorf("unreferenced chunk reported: %v", got[unknown])
	}
}

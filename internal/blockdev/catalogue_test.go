package blockdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"coffer/internal/blobstore/metrics"
	"coffer/internal/chunk"
	"coffer/internal/clock"
	"coffer/internal/store"
	"coffer/internal/store/memstore"
)

// catalogueEnv is an engine whose blob store is counted by the metrics
// decorator and whose catalogue index is a metadata store the test holds.
type catalogueEnv struct {
	*testEnv
	counted *metrics.Store
	index   *faultyIndex
}

func newCatalogueEnv(t *testing.T) *catalogueEnv {
	t.Helper()
	env := &testEnv{chunks: newMemChunks(), blobs: newMemBlobs(), dir: t.TempDir(), clk: clock.NewFake(clock.Real{}.Now())}
	ce := &catalogueEnv{testEnv: env, counted: metrics.New(env.blobs, env.clk), index: &faultyIndex{Store: memstore.New()}}
	ce.reopen(t)
	return ce
}

// reopen opens the engine again over the same stores and index.
func (ce *catalogueEnv) reopen(t *testing.T) {
	t.Helper()
	if ce.e != nil {
		if err := ce.e.Close(); err != nil {
			t.Fatal(err)
		}
	}
	e, err := Open(context.Background(), ce.dir, ce.chunks, ce.counted, Options{BlockSize: 4 << 10, Clock: ce.clk, Catalogue: ce.index})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ce.e = e
	t.Cleanup(func() { e.Close() })
}

// faultyIndex fails every Update while failing is set.
type faultyIndex struct {
	store.Store
	failing bool
}

var errInjected = errors.New("injected index failure")

func (f *faultyIndex) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	if f.failing {
		return errInjected
	}
	return f.Store.Update(ctx, fn)
}

// blobCalls returns the blob Get and List calls so far.
func (ce *catalogueEnv) blobCalls() (gets, lists uint64) {
	return ce.counted.Calls(metrics.OpGet), ce.counted.Calls(metrics.OpList)
}

// takeSnapshots writes a block and takes a snapshot of vol, n times.
func takeSnapshots(t *testing.T, e *Engine, vol string, n int) []string {
	t.Helper()
	ctx := context.Background()
	v, err := e.OpenVolume(ctx, vol)
	if errors.Is(err, ErrNotFound) {
		v, err = e.CreateVolume(ctx, vol, 1<<20)
	}
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range n {
		if _, err := v.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), int64(i%256)*4096); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("%s-s%03d", vol, i)
		if _, err := e.Snapshot(ctx, vol, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestCatalogueReadsNoBlobs proves that listing N snapshots, reading each
// one's entry, restoring one, and the GC's mark do no blob listing and no
// per-snapshot blob Get: the catalogue is read from the metadata store.
func TestCatalogueReadsNoBlobs(t *testing.T) {
	ctx := context.Background()
	ce := newCatalogueEnv(t)
	const n = 40
	ids := takeSnapshots(t, ce.e, "vol", n)

	gets0, lists0 := ce.blobCalls()
	snaps, err := ce.e.ListSnapshots(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != n {
		t.Fatalf("ListSnapshots: %d snapshots, want %d", len(snaps), n)
	}
	for _, id := range ids {
		if _, err := ce.e.StatSnapshot(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := ce.e.RestoreTo(ctx, ids[n-1], &writerAtBuf{b: make([]byte, 1<<20)}); err != nil {
		t.Fatal(err)
	}
	marked := 0
	if err := ce.e.MarkLive(ctx, func(chunk.ID) { marked++ }); err != nil {
		t.Fatal(err)
	}
	if _, err := ce.e.SnapshotsReferencing(ctx, []chunk.ID{{1}}); err != nil {
		t.Fatal(err)
	}
	gets, lists := ce.blobCalls()
	if gets != gets0 || lists != lists0 {
		t.Fatalf("reading a catalogue of %d snapshots made %d blob Gets and %d Lists, want none", n, gets-gets0, lists-lists0)
	}
	if marked == 0 {
		t.Fatal("MarkLive marked nothing")
	}

	// Opening again over a built index lists nothing either.
	ce.reopen(t)
	if gets2, lists2 := ce.blobCalls(); gets2 != gets || lists2 != lists {
		t.Fatalf("reopening over a built index made %d blob Gets and %d Lists, want none", gets2-gets, lists2-lists)
	}
}

// TestCatalogueBlobWithoutRow is the crash between writing a snapshot's
// catalogue blob and its row: the snapshot is not committed — not listed,
// not found, not kept by GC, not indexed again by a reopen or a repair —
// and the volume keeps its changes for the next snapshot.
func TestCatalogueBlobWithoutRow(t *testing.T) {
	ctx := context.Background()
	ce := newCatalogueEnv(t)
	takeSnapshots(t, ce.e, "vol", 1)
	v, err := ce.e.OpenVolume(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(bytes.Repeat([]byte{0xee}, 4096), 8*4096); err != nil {
		t.Fatal(err)
	}
	ce.index.failing = true
	if _, err := ce.e.Snapshot(ctx, "vol", "lost"); !errors.Is(err, errInjected) {
		t.Fatalf("Snapshot with a failing index: %v, want the index's error", err)
	}
	ce.index.failing = false
	if _, err := ce.blobs.Get(ctx, snapshotBlob("lost")); err != nil {
		t.Fatalf("the crash window needs the blob written: %v", err)
	}
	check := func(when string) {
		t.Helper()
		if _, err := ce.e.StatSnapshot(ctx, "lost"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: StatSnapshot of an uncommitted snapshot: %v, want ErrNotFound", when, err)
		}
		snaps, err := ce.e.ListSnapshots(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) != 1 {
			t.Fatalf("%s: %d snapshots listed, want 1 (the committed one)", when, len(snaps))
		}
	}
	check("after the failed commit")
	ce.reopen(t)
	check("after reopening")
	rep, err := ce.e.RebuildCatalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SnapshotsIndexed != 0 {
		t.Fatalf("repair indexed %d uncommitted snapshots, want 0", rep.SnapshotsIndexed)
	}
	check("after a repair")
	// Nothing was lost: the next snapshot has the write.
	si, err := ce.e.Snapshot(ctx, "vol", "next")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 1<<20)
	if err := ce.e.RestoreTo(ctx, si.ID, &writerAtBuf{b: got}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[8*4096:9*4096], bytes.Repeat([]byte{0xee}, 4096)) {
		t.Fatal("the write taken by the uncommitted snapshot is missing from the next one")
	}
}

// TestCatalogueRowWithoutBlob: a committed snapshot whose blob is lost still
// lists, restores and is kept by GC (its data is in the chunk store), and a
// repair writes its blob back.
func TestCatalogueRowWithoutBlob(t *testing.T) {
	ctx := context.Background()
	ce := newCatalogueEnv(t)
	ids := takeSnapshots(t, ce.e, "vol", 2)
	want := make([]byte, 1<<20)
	if err := ce.e.RestoreTo(ctx, ids[0], &writerAtBuf{b: want}); err != nil {
		t.Fatal(err)
	}
	if err := ce.blobs.Delete(ctx, snapshotBlob(ids[0])); err != nil {
		t.Fatal(err)
	}
	ce.reopen(t)
	if _, err := ce.e.StatSnapshot(ctx, ids[0]); err != nil {
		t.Fatalf("StatSnapshot of a snapshot whose blob is lost: %v", err)
	}
	got := make([]byte, 1<<20)
	if err := ce.e.RestoreTo(ctx, ids[0], &writerAtBuf{b: got}); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restore of a snapshot whose blob is lost: %v (equal %v)", err, bytes.Equal(got, want))
	}
	si, _ := ce.e.StatSnapshot(ctx, ids[0])
	marked := map[chunk.ID]bool{}
	if err := ce.e.MarkLive(ctx, func(id chunk.ID) { marked[id] = true }); err != nil {
		t.Fatal(err)
	}
	if !marked[si.Record] {
		t.Fatal("GC would sweep the record of a committed snapshot whose blob is lost")
	}
	rep, err := ce.e.RebuildCatalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsRewritten != 1 {
		t.Fatalf("repair rewrote %d blobs, want 1", rep.BlobsRewritten)
	}
	b, err := ce.blobs.Get(ctx, snapshotBlob(ids[0]))
	if err != nil {
		t.Fatal(err)
	}
	if back, err := decodeCatalogue(ids[0], b); err != nil || back.Record != si.Record {
		t.Fatalf("rewritten blob: %+v, %v", back, err)
	}
}

// TestCatalogueUpgrade opens an engine over a repository whose catalogue
// exists only as blobs (as every repository did before the index): the
// first Open builds the index, after which snapshots list and volumes keep
// their base, with no blob read.
func TestCatalogueUpgrade(t *testing.T) {
	ctx := context.Background()
	ce := newCatalogueEnv(t)
	ids := takeSnapshots(t, ce.e, "vol", 3)
	takeSnapshots(t, ce.e, "other", 2)
	if err := ce.e.DeleteSnapshot(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	// The old repository: its blobs, and a metadata store without the index.
	ce.index = &faultyIndex{Store: memstore.New()}
	ce.reopen(t)
	snaps, err := ce.e.ListSnapshots(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 || snaps[0].ID != ids[0] || snaps[1].ID != ids[2] {
		t.Fatalf("after the upgrade: %+v, want %s and %s", snaps, ids[0], ids[2])
	}
	if all, _ := ce.e.ListSnapshots(ctx, ""); len(all) != 4 {
		t.Fatalf("after the upgrade: %d snapshots, want 4", len(all))
	}
	// The volume record came across: the next snapshot is incremental to
	// the last one.
	si, err := ce.e.Snapshot(ctx, "vol", "after")
	if err != nil {
		t.Fatal(err)
	}
	if si.Parent != ids[2] {
		t.Fatalf("snapshot after the upgrade has parent %q, want %q", si.Parent, ids[2])
	}
	gets, lists := ce.blobCalls()
	ce.reopen(t)
	if _, err := ce.e.ListSnapshots(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if g, l := ce.blobCalls(); g != gets || l != lists {
		t.Fatalf("second open after the upgrade made %d blob Gets and %d Lists, want none", g-gets, l-lists)
	}
}

package blockdev

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/blobstore/local"
	"coffer/internal/chunkstore"
	"coffer/internal/store"
	"coffer/internal/store/sqlite"
)

// commitLog records, in order, when each write of a snapshot's commit
// began and ended: blob Puts (a pack, snapshots/..., volumes/...), the
// chunk index's Adds, and the catalogue's Updates with the kinds each put.
type commitLog struct {
	mu     sync.Mutex
	events []string
	// snapBlob is closed when the Put of snapshots/<armed> begins.
	armed    string
	snapBlob chan struct{}
}

func (l *commitLog) add(ev string) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

// arm starts a new log for the commit of snapshot id.
func (l *commitLog) arm(id string) {
	l.mu.Lock()
	l.events, l.armed, l.snapBlob = nil, id, make(chan struct{})
	l.mu.Unlock()
}

func blobKind(name string) string {
	switch {
	case strings.HasPrefix(name, "snapshots/"):
		return "snapshot-blob"
	case strings.HasPrefix(name, "volumes/"):
		return "volume-blob"
	}
	return "pack"
}

type loggedBlobs struct {
	blobstore.Store
	log *commitLog
}

func (b *loggedBlobs) Put(ctx context.Context, name string, data []byte) error {
	k := blobKind(name)
	b.log.mu.Lock()
	if name == snapshotBlob(b.log.armed) && b.log.snapBlob != nil {
		close(b.log.snapBlob)
		b.log.snapBlob = nil
	}
	b.log.mu.Unlock()
	b.log.add("begin " + k)
	err := b.Store.Put(ctx, name, data)
	b.log.add("end " + k)
	return err
}

// loggedIndex is the chunk index; while the log is armed its Add waits
// for the snapshot's catalogue blob to begin: a commit that wrote that
// blob only after the index add would never get there.
type loggedIndex struct {
	chunkstore.Index
	log *commitLog
	t   *testing.T
}

func (x *loggedIndex) Add(ctx context.Context, entries []chunkstore.Entry) error {
	x.log.add("begin index-add")
	x.log.mu.Lock()
	wait := x.log.snapBlob
	x.log.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-time.After(time.Minute): // a guard against a hang, not a measure
			x.t.Error("the index add ended without the catalogue entry's blob being written alongside it")
		}
	}
	err := x.Index.Add(ctx, entries)
	x.log.add("end index-add")
	return err
}

// loggedCatalogue logs each Update's end with the kinds it put.
type loggedCatalogue struct {
	store.Store
	log *commitLog
}

type loggedTx struct {
	store.Tx
	kinds *[]string
}

func (tx loggedTx) Put(ctx context.Context, o *store.Object, opts store.PutOptions) error {
	*tx.kinds = append(*tx.kinds, o.Kind)
	return tx.Tx.Put(ctx, o, opts)
}

func (c *loggedCatalogue) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	var kinds []string
	c.log.add("begin rows")
	err := c.Store.Update(ctx, func(tx store.Tx) error {
		kinds = kinds[:0]
		return fn(loggedTx{Tx: tx, kinds: &kinds})
	})
	slices.Sort(kinds)
	c.log.add(fmt.Sprintf("end rows %v", kinds))
	return err
}

// TestSnapshotCommitOrder checks the commit order of docs/volumes.md on a
// real chunk store (packs in a local blob store, index and catalogue in
// SQLite): every pack is durable before either catalogue blob is begun;
// the catalogue entry's blob is written while the chunks' index add runs;
// the index add and both blobs end before the rows; and the snapshot's row
// and the volume's row commit in one transaction.
func TestSnapshotCommitOrder(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lb, err := local.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := &commitLog{}
	blobs := &loggedBlobs{Store: lb, log: log}
	cs, err := chunkstore.New(blobs, &loggedIndex{Index: db.ChunkIndex(), log: log, t: t}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(ctx, filepath.Join(dir, "engine"), cs, blobs, Options{BlockSize: 4 << 10, Catalogue: &loggedCatalogue{Store: db, log: log}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	v, err := e.CreateVolume(ctx, "vol", 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	model := make([]byte, 4<<20)
	for i, id := range []string{"full", "inc"} {
		applyWrites(t, v, genWrites(uint64(i+1), 200, 4<<20, 4096), model)
		log.arm(id)
		si, err := e.Snapshot(ctx, "vol", id)
		if err != nil {
			t.Fatal(err)
		}
		log.mu.Lock()
		events := slices.Clone(log.events)
		log.mu.Unlock()
		at := func(ev string) int {
			i := slices.Index(events, ev)
			if i < 0 {
				t.Fatalf("%s: no %q in %q", id, ev, events)
			}
			return i
		}
		lastPack := slices.Index(events, "end pack")
		for j, ev := range events {
			if ev == "end pack" {
				lastPack = j
			}
		}
		if lastPack < 0 {
			t.Fatalf("%s: no pack written: %q", id, events)
		}
		sb, vb := at("begin snapshot-blob"), at("begin volume-blob")
		if lastPack > sb || lastPack > vb {
			t.Fatalf("%s: a catalogue blob was begun before the last pack was durable: %q", id, events)
		}
		rows := at("begin rows")
		for _, ev := range []string{"end index-add", "end snapshot-blob", "end volume-blob"} {
			if at(ev) > rows {
				t.Fatalf("%s: the rows were begun before %q: %q", id, ev, events)
			}
		}
		if at("end rows [blockdev.snapshot blockdev.volume]") < rows {
			t.Fatalf("%s: the snapshot's and the volume's rows are not one transaction: %q", id, events)
		}
		if sb > at("end index-add") {
			t.Fatalf("%s: the catalogue entry's blob was begun after the index add: %q", id, events)
		}
		// The blobs and rows say the same.
		vr, err := e.getVolumeRecord(ctx, "vol")
		if err != nil {
			t.Fatal(err)
		}
		if vr.Base != si.Record || vr.BaseSnapshot != id {
			t.Fatalf("%s: volume record %+v, want its base at the snapshot", id, vr)
		}
		checkBlobIsRow(t, e, "vol")
		got := make([]byte, 4<<20)
		if err := e.RestoreTo(ctx, id, &writerAtBuf{b: got}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, model) {
			t.Fatalf("%s: restored image differs at %d", id, firstDiff(got, model))
		}
	}
}

// checkBlobIsRow fails unless volumes/<id> holds what its row holds.
func checkBlobIsRow(t *testing.T, e *Engine, id string) {
	t.Helper()
	ctx := context.Background()
	row, err := e.getRow(ctx, KindVolume, id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.blobs.Get(ctx, volumeBlob(id))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, row) {
		t.Fatalf("volume blob %s, row %s", b, row)
	}
}

// snapshottedAndWritten is a catalogue env whose volume "vol" has one
// snapshot and a block written since, open.
func snapshottedAndWritten(t *testing.T) (*catalogueEnv, *Volume) {
	t.Helper()
	ce := newCatalogueEnv(t)
	takeSnapshots(t, ce.e, "vol", 1)
	v, err := ce.e.OpenVolume(context.Background(), "vol")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(bytes.Repeat([]byte{0xee}, 4096), 8*4096); err != nil {
		t.Fatal(err)
	}
	return ce, v
}

// TestSnapshotCommitFailedVolumeBlob: the volume record's blob, written
// with the snapshot's catalogue entry before the rows, does not stay ahead
// of its row when the rows fail to commit, nor after a crash in that
// window (the next open writes it back from the row).
func TestSnapshotCommitFailedVolumeBlob(t *testing.T) {
	ctx := context.Background()
	ce, v := snapshottedAndWritten(t)
	ce.index.failing = true
	if _, err := ce.e.Snapshot(ctx, "vol", "lost"); err == nil {
		t.Fatal("Snapshot with a failing index succeeded")
	}
	ce.index.failing = false
	checkBlobIsRow(t, ce.e, "vol")

	// A crash between the blobs and the rows: the blob is ahead.
	vr, err := ce.e.getVolumeRecord(ctx, "vol")
	if err != nil {
		t.Fatal(err)
	}
	ahead := vr
	ahead.BaseSnapshot = "lost"
	b, _ := json.Marshal(ahead)
	if err := ce.blobs.Put(ctx, volumeBlob("vol"), b); err != nil {
		t.Fatal(err)
	}
	v.crash()
	if _, err := ce.e.OpenVolume(ctx, "vol"); err != nil {
		t.Fatal(err)
	}
	checkBlobIsRow(t, ce.e, "vol")
}

// TestSnapshotCommitFailedFlushLeavesVolumeBlob: a snapshot whose chunks
// could not be flushed (a pack write that failed, or was cancelled while
// the blob store held it) never wrote its blobs, so it writes no volume
// blob back either: a blob store that held the cancelled pack upload would
// hold that write too, and the failed backup would not end.
func TestSnapshotCommitFailedFlushLeavesVolumeBlob(t *testing.T) {
	ctx := context.Background()
	ce, _ := snapshottedAndWritten(t)
	before := ce.blobs.putsOf(volumeBlob("vol"))
	ce.chunks.failFlush.Store(true)
	if _, err := ce.e.Snapshot(ctx, "vol", "lost"); !errors.Is(err, errInjected) {
		t.Fatalf("Snapshot with a failing flush: %v, want the flush's error", err)
	}
	ce.chunks.failFlush.Store(false)
	if n := ce.blobs.putsOf(volumeBlob("vol")) - before; n != 0 {
		t.Fatalf("the failed commit wrote the volume blob %d times, want none", n)
	}
	if _, err := ce.blobs.Get(ctx, snapshotBlob("lost")); err == nil {
		t.Fatal("the failed commit wrote its catalogue entry")
	}
	checkBlobIsRow(t, ce.e, "vol")
	if _, err := ce.e.Snapshot(ctx, "vol", "next"); err != nil {
		t.Fatalf("the next snapshot: %v", err)
	}
	checkBlobIsRow(t, ce.e, "vol")
}

package blockdev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/store"
)

// The catalogue — which snapshots are committed, and each volume's record —
// is kept twice:
//
//   - in the metadata store (Options.Catalogue), one object per snapshot
//     (kind KindSnapshot) and per volume (kind KindVolume), whose Data is
//     the same JSON as the blob. This index is authoritative: a snapshot
//     exists when its row does, and every read (StatSnapshot, ListSnapshots,
//     MarkLive, SnapshotsReferencing, restore, verify) reads rows only, never
//     a blob listing or a per-snapshot blob Get;
//   - in the blob store, snapshots/<id> and volumes/<id>, written before the
//     row and deleted after it, so that the repository stays self-describing:
//     RebuildCatalogue rebuilds the index from it (upgrade of a repository
//     that predates the index, or a metadata database lost and started
//     empty).
//
// Crash windows: a blob without a row is a snapshot whose commit did not
// finish (or whose delete did not); it is invisible, its chunks are not
// kept by GC, and RebuildCatalogue indexes it only while the index is being
// built for the first time. A row without a blob (the blob lost or deleted
// by hand) is a committed snapshot: it lists, restores and is kept by GC,
// since its data is in the chunk store; RebuildCatalogue writes its blob
// back.
const (
	KindSnapshot = "blockdev.snapshot"
	KindVolume   = "blockdev.volume"
	// kindState holds one object, catalogueStateKey, once the index has
	// been built from the blob store (or started empty with it).
	kindState         = "blockdev.catalogue"
	catalogueStateKey = "state"
)

// catalogueState is the object kindState/state.
type catalogueState struct {
	Version int `json:"version"`
}

// rebuildBatch is how many rows one Update of RebuildCatalogue writes.
const rebuildBatch = 500

// openCatalogue builds the index from the blob store the first time an
// engine opens over a metadata store that has none.
func (e *Engine) openCatalogue(ctx context.Context) error {
	built := false
	err := e.index.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get(ctx, kindState, catalogueStateKey)
		switch {
		case err == nil:
			built = true
			return nil
		case errors.Is(err, store.ErrNotFound):
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("open snapshot catalogue: %w", err)
	}
	if built {
		return nil
	}
	if _, err := e.RebuildCatalogue(ctx); err != nil {
		return fmt.Errorf("open snapshot catalogue: %w", err)
	}
	return nil
}

// RebuildReport counts what RebuildCatalogue did.
type RebuildReport struct {
	SnapshotsIndexed int // snapshot blobs added to the index
	VolumesIndexed   int // volume blobs added to the index
	BlobsRewritten   int // rows whose missing blob was written back
}

// RebuildCatalogue makes the index and the catalogue blobs agree: every
// snapshots/ and volumes/ blob without a row gets one (only while the index
// is being built for the first time; afterwards such a blob is an
// unfinished commit or delete and is left alone), and every row without a
// blob gets its blob back. It lists the blob store, so it runs only at the
// first Open over an empty index (upgrade) or when an operator asks for a
// repair — never on a hot path. It is safe to run again and concurrently
// with itself.
func (e *Engine) RebuildCatalogue(ctx context.Context) (RebuildReport, error) {
	var rep RebuildReport
	first := true
	rows := map[string]map[string][]byte{KindSnapshot: {}, KindVolume: {}}
	err := e.index.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Get(ctx, kindState, catalogueStateKey); err == nil {
			first = false
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		for kind, m := range rows {
			objs, err := tx.List(ctx, store.Query{Kind: kind})
			if err != nil {
				return err
			}
			for _, o := range objs {
				m[o.Key] = o.Data
			}
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("rebuild snapshot catalogue: %w", err)
	}
	var missing []store.Object
	seen := map[string]map[string]bool{KindSnapshot: {}, KindVolume: {}}
	for _, k := range []struct{ kind, prefix string }{{KindSnapshot, "snapshots/"}, {KindVolume, "volumes/"}} {
		err := e.blobs.List(ctx, k.prefix, func(info blobstore.Info) error {
			id := info.Name[len(k.prefix):]
			seen[k.kind][id] = true
			if _, ok := rows[k.kind][id]; ok || !first {
				return nil
			}
			b, err := e.blobs.Get(ctx, info.Name)
			if errors.Is(err, blobstore.ErrNotFound) {
				return nil // deleted meanwhile
			}
			if err != nil {
				return err
			}
			if k.kind == KindSnapshot {
				if _, err := decodeCatalogue(id, b); err != nil {
					return err
				}
				rep.SnapshotsIndexed++
			} else {
				if _, err := decodeVolumeRecord(id, b); err != nil {
					return err
				}
				rep.VolumesIndexed++
			}
			missing = append(missing, store.Object{Kind: k.kind, Key: id, Data: b})
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("rebuild snapshot catalogue: %w", err)
		}
	}
	for kind, m := range rows {
		prefix := "snapshots/"
		if kind == KindVolume {
			prefix = "volumes/"
		}
		ids := make([]string, 0, len(m))
		for id := range m {
			if !seen[kind][id] {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		for _, id := range ids {
			if err := e.blobs.Put(ctx, prefix+id, m[id]); err != nil {
				return rep, fmt.Errorf("rebuild snapshot catalogue: write back %s%s: %w", prefix, id, err)
			}
			rep.BlobsRewritten++
		}
	}
	for len(missing) > 0 {
		n := min(len(missing), rebuildBatch)
		batch := missing[:n]
		missing = missing[n:]
		err := e.index.Update(ctx, func(tx store.Tx) error {
			for _, o := range batch {
				o := o
				// CreateOnly: a row written meanwhile (a snapshot committed
				// on another node) wins over the blob we read.
				if err := tx.Put(ctx, &o, store.PutOptions{CreateOnly: true}); err != nil && !errors.Is(err, store.ErrConflict) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return rep, fmt.Errorf("rebuild snapshot catalogue: %w", err)
		}
	}
	if first {
		err := e.index.Update(ctx, func(tx store.Tx) error {
			b, _ := json.Marshal(catalogueState{Version: 1})
			return tx.Put(ctx, &store.Object{Kind: kindState, Key: catalogueStateKey, Data: b}, store.PutOptions{})
		})
		if err != nil {
			return rep, fmt.Errorf("rebuild snapshot catalogue: %w", err)
		}
	}
	return rep, nil
}

// commitSnapshot commits a snapshot's catalogue entry and, with vol not
// nil, the volume record that moves its volume's base to it. With put not
// nil it first flushes put, which holds the snapshot's chunks.
//
// Order (docs/volumes.md, "Commit order"): the chunks' packs are durable
// before either blob is written; the two blobs, snapshots/<id> and
// volumes/<vol>, are then written at the same time, and while the chunks'
// index add runs (flushAlso); both rows follow in one transaction, after
// the index add and both blobs: the snapshot's row (CreateOnly, so that
// two snapshots racing for one ID cannot both commit; the loser gets
// ErrExists) is the commit point, and the volume row moves with it or not
// at all. A blob written ahead of its row is invisible (rows are
// authoritative); should the rows not commit, the volume blob is put back
// from its row (restoreVolumeBlob), and after a crash the volume's next
// open does the same (an unclean stop, openVolume).
func (e *Engine) commitSnapshot(ctx context.Context, put chunkPutter, si SnapshotInfo, vol *volumeRecord) error {
	ce, _ := json.Marshal(catalogueEntry{Version: 1, SnapshotInfo: si})
	var vb []byte
	if vol != nil {
		vol.Version = 1
		vb, _ = json.Marshal(*vol)
	}
	var volBlobTried atomic.Bool // the volume blob's Put began
	blobs := func(ctx context.Context) error {
		var wg sync.WaitGroup
		var verr error
		if vb != nil {
			volBlobTried.Store(true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.blobs.Put(ctx, volumeBlob(vol.ID), vb); err != nil {
					verr = fmt.Errorf("write volume record %s: %w", vol.ID, err)
				}
			}()
		}
		err := e.blobs.Put(ctx, snapshotBlob(si.ID), ce)
		if err != nil {
			err = fmt.Errorf("write catalogue entry: %w", err)
		}
		wg.Wait()
		return errors.Join(err, verr)
	}
	var err error
	if put != nil {
		err = flushAlso(ctx, put, blobs)
	} else {
		err = blobs(ctx)
	}
	if err == nil {
		err = e.index.Update(ctx, func(tx store.Tx) error {
			if err := tx.Put(ctx, &store.Object{Kind: KindSnapshot, Key: si.ID, Data: ce}, store.PutOptions{CreateOnly: true}); err != nil {
				return err
			}
			if vb == nil {
				return nil
			}
			return tx.Put(ctx, &store.Object{Kind: KindVolume, Key: vol.ID, Data: vb}, store.PutOptions{})
		})
		switch {
		case errors.Is(err, store.ErrConflict):
			err = ErrExists
		case err != nil:
			err = fmt.Errorf("commit catalogue entry: %w", err)
		}
	} else {
		err = fmt.Errorf("flush chunks, write catalogue entry: %w", err)
	}
	if err != nil && volBlobTried.Load() {
		// Not after a commit cancelled or failed before its blobs: the
		// blob is then as its row left it, and a blob store that holds
		// the cancelled pack upload would hold this write too.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), restoreBlobTimeout)
		e.restoreVolumeBlob(rctx, vol.ID)
		cancel()
	}
	return err
}

// restoreBlobTimeout bounds restoreVolumeBlob after a failed commit, whose
// context may be cancelled: a blob store that does not answer must not
// keep the failed snapshot from returning. The volume's next open after an
// unclean stop writes the blob back too.
const restoreBlobTimeout = 30 * time.Second

// restoreVolumeBlob writes volumes/<id> back from its row, after a commit
// that may have written the blob ahead of a row that did not follow; best
// effort (a blob ahead of its row is read only by a first build of the
// index, RebuildCatalogue).
func (e *Engine) restoreVolumeBlob(ctx context.Context, id string) {
	if b, err := e.getRow(ctx, KindVolume, id); err == nil {
		_ = e.blobs.Put(ctx, volumeBlob(id), b)
	}
}

// putRow writes (or replaces) one row of the index.
func (e *Engine) putRow(ctx context.Context, kind, id string, data []byte, opts store.PutOptions) error {
	return e.index.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: kind, Key: id, Data: data}, opts)
	})
}

// getRow reads one row of the index; a missing row is ErrNotFound.
func (e *Engine) getRow(ctx context.Context, kind, id string) ([]byte, error) {
	var b []byte
	err := e.index.View(ctx, func(tx store.Tx) error {
		o, err := tx.Get(ctx, kind, id)
		b = o.Data
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	return b, err
}

// deleteRow removes one row of the index; a missing row is not an error.
func (e *Engine) deleteRow(ctx context.Context, kind, id string) error {
	return e.index.Update(ctx, func(tx store.Tx) error {
		if err := tx.Delete(ctx, kind, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
}

// catalogue reads every committed snapshot (and, with volumes, every
// volume record) in one consistent view of the index.
func (e *Engine) catalogue(ctx context.Context, volumes bool) ([]SnapshotInfo, []volumeRecord, error) {
	var snaps []SnapshotInfo
	var vols []volumeRecord
	err := e.index.View(ctx, func(tx store.Tx) error {
		snaps, vols = nil, nil
		objs, err := tx.List(ctx, store.Query{Kind: KindSnapshot})
		if err != nil {
			return err
		}
		snaps = make([]SnapshotInfo, 0, len(objs))
		for _, o := range objs {
			si, err := decodeCatalogue(o.Key, o.Data)
			if err != nil {
				return err
			}
			snaps = append(snaps, si)
		}
		if !volumes {
			return nil
		}
		if objs, err = tx.List(ctx, store.Query{Kind: KindVolume}); err != nil {
			return err
		}
		vols = make([]volumeRecord, 0, len(objs))
		for _, o := range objs {
			vr, err := decodeVolumeRecord(o.Key, o.Data)
			if err != nil {
				return err
			}
			vols = append(vols, vr)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read snapshot catalogue: %w", err)
	}
	return snaps, vols, nil
}

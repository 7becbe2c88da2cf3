package blockdev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"coffer/internal/blobstore"
	"coffer/internal/chunk"
)

// MarkLive calls mark for every chunk the engine needs, for the chunk
// store's garbage collector (it has the shape of chunkstore.MarkFunc):
//
//   - every committed snapshot in the catalogue (record, pages, data);
//   - every volume's base manifest (volumes/<id>: the manifest its next
//     snapshot reuses pages from, even if that snapshot was deleted);
//   - every hydrating volume's source manifest.
//
// Chunks are marked once per page visited; a page shared by many snapshots
// is walked once. Contract with the GC: MarkLive lists the catalogue once,
// so a snapshot committed after that listing is not seen. Its new chunks
// were Put during the GC run and its reused pages belong to its volume's
// base, which is marked; the chunk store's safety margin must therefore
// keep every chunk Put (or deduplicated by a Put) since the GC run began.
func (e *Engine) MarkLive(ctx context.Context, mark func(chunk.ID)) error {
	m := &marker{e: e, mark: mark, pages: map[chunk.ID]struct{}{}, records: map[chunk.ID]struct{}{}}
	// Volume records first: a snapshot committed during the run moves its
	// volume's base only after its catalogue entry exists.
	err := e.blobs.List(ctx, "volumes/", func(info blobstore.Info) error {
		b, err := e.blobs.Get(ctx, info.Name)
		if errors.Is(err, blobstore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var vr volumeRecord
		if err := json.Unmarshal(b, &vr); err != nil || vr.Version != 1 {
			return fmt.Errorf("volume record %s: %w", info.Name, ErrFormat)
		}
		for _, id := range []chunk.ID{vr.Base, vr.HydrateFrom} {
			if err := m.record(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark live chunks: %w", err)
	}
	err = e.blobs.List(ctx, "snapshots/", func(info blobstore.Info) error {
		b, err := e.blobs.Get(ctx, info.Name)
		if errors.Is(err, blobstore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		si, err := decodeCatalogue(info.Name[len("snapshots/"):], b)
		if err != nil {
			return err
		}
		return m.record(ctx, si.Record)
	})
	if err != nil {
		return fmt.Errorf("mark live chunks: %w", err)
	}
	return nil
}

type marker struct {
	e       *Engine
	mark    func(chunk.ID)
	pages   map[chunk.ID]struct{}
	records map[chunk.ID]struct{}
}

func (m *marker) record(ctx context.Context, id chunk.ID) error {
	if id.IsZero() {
		return nil
	}
	if _, ok := m.records[id]; ok {
		return nil
	}
	m.records[id] = struct{}{}
	m.mark(id)
	rec, err := m.e.loadRecord(ctx, id)
	if err != nil {
		return err
	}
	for p, pid := range rec.Pages {
		if pid.IsZero() {
			continue
		}
		if _, ok := m.pages[pid]; ok {
			continue
		}
		m.pages[pid] = struct{}{}
		m.mark(pid)
		entries, err := m.e.loadPage(ctx, rec, int64(p))
		if err != nil {
			return err
		}
		for _, c := range entries {
			if !c.IsZero() {
				m.mark(c)
			}
		}
	}
	return nil
}

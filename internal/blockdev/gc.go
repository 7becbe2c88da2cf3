package blockdev

import (
	"context"
	"fmt"

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
// is walked once. Contract with the GC: MarkLive reads the catalogue index
// once (no blob listing),
// so a snapshot committed after that listing is not seen. Its new chunks
// were Put during the GC run and its reused pages belong to its volume's
// base, which is marked; the chunk store's safety margin must therefore
// keep every chunk Put (or deduplicated by a Put) since the GC run began.
func (e *Engine) MarkLive(ctx context.Context, mark func(chunk.ID)) error {
	m := &marker{e: e, mark: mark, pages: map[chunk.ID]struct{}{}, records: map[chunk.ID]struct{}{}}
	// One view of the index: a snapshot committed during the run moves its
	// volume's base only after its row exists, so a view that sees the new
	// base sees the snapshot too.
	snaps, vols, err := e.catalogue(ctx, true)
	if err != nil {
		return fmt.Errorf("mark live chunks: %w", err)
	}
	for _, vr := range vols {
		for _, id := range []chunk.ID{vr.Base, vr.HydrateFrom} {
			if err := m.record(ctx, id); err != nil {
				return fmt.Errorf("mark live chunks: volume %s: %w", vr.ID, err)
			}
		}
	}
	for _, si := range snaps {
		if err := m.record(ctx, si.Record); err != nil {
			return fmt.Errorf("mark live chunks: snapshot %s: %w", si.ID, err)
		}
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

package blockdev

import (
	"context"
	"fmt"
	"sort"

	"coffer/internal/chunk"
)

// SnapshotsReferencing maps each of ids (typically chunks that verification
// found corrupt) to the committed snapshots whose manifests reference it —
// as their record, an index page or a data block — so that a damaged pack
// can be reported with the recovery points it affects. A snapshot whose
// record or page cannot be read is reported against that chunk's ID.
// Pages shared between snapshots are read once.
func (e *Engine) SnapshotsReferencing(ctx context.Context, ids []chunk.ID) (map[chunk.ID][]string, error) {
	want := make(map[chunk.ID]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	out := map[chunk.ID][]string{}
	if len(want) == 0 {
		return out, nil
	}
	pageHits := map[chunk.ID][]chunk.ID{} // page → wanted IDs it holds (or itself if unreadable)
	add := func(id chunk.ID, snap string) {
		s := out[id]
		if len(s) == 0 || s[len(s)-1] != snap {
			out[id] = append(s, snap)
		}
	}
	snaps, _, err := e.catalogue(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("find snapshots referencing chunks: %w", err)
	}
	for _, si := range snaps {
		snap := si.ID
		if want[si.Record] {
			add(si.Record, snap)
		}
		rec, err := e.loadRecord(ctx, si.Record)
		if err != nil {
			add(si.Record, snap)
			continue
		}
		for p, pid := range rec.Pages {
			if pid.IsZero() {
				continue
			}
			hits, seen := pageHits[pid]
			if !seen {
				if want[pid] {
					hits = append(hits, pid)
				}
				entries, err := e.loadPage(ctx, rec, int64(p))
				if err != nil {
					hits = append(hits, pid)
				}
				for _, c := range entries {
					if want[c] {
						hits = append(hits, c)
					}
				}
				pageHits[pid] = hits
			}
			for _, c := range hits {
				add(c, snap)
			}
		}
	}
	for id := range out {
		s := out[id]
		sort.Strings(s)
		out[id] = dedupSorted(s)
	}
	return out, nil
}

func dedupSorted(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

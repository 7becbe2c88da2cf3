package blockdev

import (
	"context"
	"fmt"

	"coffer/internal/chunk"
)

// Diff returns the byte ranges whose contents differ between snapshots a
// and b, merged and in order. It compares page IDs first and reads only the
// pages that differ. Blocks past the end of the smaller snapshot count as
// holes; the snapshots must share the engine's block size.
func (e *Engine) Diff(ctx context.Context, a, b string) ([]Extent, error) {
	_, ra, err := e.loadSnapshot(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	_, rb, err := e.loadSnapshot(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	out, err := e.diffRecords(ctx, ra, rb)
	if err != nil {
		return nil, fmt.Errorf("diff %s %s: %w", a, b, err)
	}
	return out, nil
}

func (e *Engine) diffRecords(ctx context.Context, ra, rb *record) ([]Extent, error) {
	bs := ra.BlockSize
	size := max(ra.Size, rb.Size)
	np := max(len(ra.Pages), len(rb.Pages))
	var out []Extent
	add := func(blk int64) {
		off := blk * bs
		l := min(bs, size-off)
		if k := len(out); k > 0 && out[k-1].Offset+out[k-1].Length == off {
			out[k-1].Length += l
			return
		}
		out = append(out, Extent{Offset: off, Length: l})
	}
	page := func(r *record, p int) ([]chunk.ID, error) {
		if p >= len(r.Pages) {
			return nil, nil
		}
		return e.loadPage(ctx, r, int64(p))
	}
	for p := 0; p < np; p++ {
		var ida, idb chunk.ID
		if p < len(ra.Pages) {
			ida = ra.Pages[p]
		}
		if p < len(rb.Pages) {
			idb = rb.Pages[p]
		}
		if ida == idb {
			if ida.IsZero() || pageLen(ra.nblocks(), int64(p)) == pageLen(rb.nblocks(), int64(p)) {
				continue // identical pages (same ID and length) or both holes
			}
		}
		pa, err := page(ra, p)
		if err != nil {
			return nil, err
		}
		pb, err := page(rb, p)
		if err != nil {
			return nil, err
		}
		for i := range max(len(pa), len(pb)) {
			var x, y chunk.ID
			if i < len(pa) {
				x = pa[i]
			}
			if i < len(pb) {
				y = pb[i]
			}
			if x != y {
				add(int64(p)*EntriesPerPage + int64(i))
			}
		}
	}
	return out, nil
}

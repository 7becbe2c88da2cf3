package blockdev

import (
	"context"
	"fmt"

	"coffer/internal/chunk"
)

// BatchGetter is implemented by chunk stores that read many chunks with one
// index lookup and few ranged reads (chunkstore.Store). GetManyInto calls
// fn for every index of ids, in any order, from the calling goroutine; data
// is verified against its ID and valid only until fn returns. rbuf, when
// not nil, is the memory of its ranged reads (aligned, at least
// chunkstore.MinReadBuf bytes), ahead how many of them may be under way
// while fn handles an earlier one; dst, when not nil, is where chunk i
// may be decompressed (see chunkstore.Store.GetManyInto). Without it the
// engine reads chunk by chunk with Get.
type BatchGetter interface {
	GetManyInto(ctx context.Context, ids []chunk.ID, rbuf []byte, ahead int, dst func(i int) []byte, fn func(i int, data []byte) error) error
}

// getMany reads ids through the chunk store's batched path if it has one.
func (e *Engine) getMany(ctx context.Context, ids []chunk.ID, fn func(i int, data []byte) error) error {
	return e.getManyInto(ctx, ids, nil, 0, nil, fn)
}

// getManyInto is getMany with the caller's read buffer, read-ahead and
// destinations (BatchGetter); a chunk store without the batched path
// ignores them.
func (e *Engine) getManyInto(ctx context.Context, ids []chunk.ID, rbuf []byte, ahead int, dst func(i int) []byte, fn func(i int, data []byte) error) error {
	if bg, ok := e.chunks.(BatchGetter); ok {
		return batchRead(ctx, len(ids), fn, func(fn func(i int, data []byte) error) error {
			return bg.GetManyInto(ctx, ids, rbuf, ahead, dst, fn)
		})
	}
	for i, id := range ids {
		data, err := e.chunks.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("read chunk %s: %w: %w", id.Short(), ErrCorrupt, err)
		}
		if err := fn(i, data); err != nil {
			return err
		}
	}
	return nil
}

// batchRead runs read, a batched read of n chunks that calls fn for each,
// and returns fn's own errors as they are, the others wrapped: with
// ErrCorrupt unless ctx ended.
func batchRead(ctx context.Context, n int, fn func(i int, data []byte) error, read func(fn func(i int, data []byte) error) error) error {
	var fnErr error
	err := read(func(i int, data []byte) error {
		fnErr = fn(i, data)
		return fnErr
	})
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return fnErr
	case ctx.Err() != nil:
		return fmt.Errorf("read %d chunks: %w", n, err)
	}
	return fmt.Errorf("read %d chunks: %w: %w", n, ErrCorrupt, err)
}

// pageBatch is how many index pages are fetched with one getMany.
const pageBatch = 64

// loadPages calls fn(p, entries) for the pages [p0, p1) of r in order,
// fetching them pageBatch at a time (pages written together sit together
// in a pack). Pages with the zero ID are all holes: fn gets nil for them, or
// they are skipped with skipHoles. entries is fn's to keep.
func (e *Engine) loadPages(ctx context.Context, r *record, p0, p1 int64, skipHoles bool, fn func(p int64, entries []chunk.ID) error) error {
	return e.loadPageBatches(ctx, r, p0, p1, func(b0 int64, pages [][]chunk.ID) error {
		for i, entries := range pages {
			if entries == nil && skipHoles {
				continue
			}
			if err := fn(b0+int64(i), entries); err != nil {
				return err
			}
		}
		return nil
	})
}

// loadPageBatches is loadPages a batch at a time: fn(b0, pages) gets the
// entries of the pages b0, b0+1, … (up to pageBatch of them, nil for a
// page of holes) as one getMany fetched them, for callers that look at a
// batch before handling its pages one by one (restoreRecord).
func (e *Engine) loadPageBatches(ctx context.Context, r *record, p0, p1 int64, fn func(b0 int64, pages [][]chunk.ID) error) error {
	for b0 := p0; b0 < p1; b0 += pageBatch {
		b1 := min(b0+pageBatch, p1)
		var which []int64
		for p := b0; p < b1; p++ {
			if !r.Pages[p].IsZero() {
				which = append(which, p)
			}
		}
		pages := make([][]chunk.ID, b1-b0)
		if err := e.fetchPages(ctx, r, which, func(p int64, entries []chunk.ID) { pages[p-b0] = entries }); err != nil {
			return err
		}
		if err := fn(b0, pages); err != nil {
			return err
		}
	}
	return nil
}

// fetchPages fetches the index pages which of r (in ascending order, no
// page of holes among them) with one getMany and calls put(p, entries)
// for each, in any order; entries is put's to keep.
func (e *Engine) fetchPages(ctx context.Context, r *record, which []int64, put func(p int64, entries []chunk.ID)) error {
	if len(which) == 0 {
		return nil
	}
	nb := r.nblocks()
	ids := make([]chunk.ID, len(which))
	for i, p := range which {
		ids[i] = r.Pages[p]
	}
	err := e.getMany(ctx, ids, func(i int, data []byte) error {
		p := which[i]
		entries, err := decodePageOf(data, ids[i], p, pageLen(nb, p))
		if err != nil {
			return err
		}
		put(p, entries)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read index pages %d-%d: %w", which[0], which[len(which)-1], err)
	}
	return nil
}

// blockData returns the n bytes to write for a block whose chunk is data:
// data itself, or data zero-padded to n in buf.
func blockData(id chunk.ID, data, buf []byte, n int64) ([]byte, error) {
	if int64(len(data)) > int64(len(buf)) {
		return nil, fmt.Errorf("chunk %s is %d bytes, larger than a block: %w", id.Short(), len(data), ErrCorrupt)
	}
	if int64(len(data)) >= n {
		return data[:n], nil
	}
	copy(buf, data)
	clear(buf[len(data):n])
	return buf[:n], nil
}

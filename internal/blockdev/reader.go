package blockdev

import (
	"context"
	"fmt"
	"io"

	"coffer/internal/chunk"
)

// SnapshotReader is a read-only view of a snapshot with the read interface
// of a Volume, served from the chunk store (for read-only exports). It is
// safe for concurrent use and holds a small bounded cache of index pages.
type SnapshotReader struct {
	e     *Engine
	info  SnapshotInfo
	rec   *record
	cache *pageCache
}

// OpenSnapshot returns a read-only view of a committed snapshot.
func (e *Engine) OpenSnapshot(ctx context.Context, snapshotID string) (*SnapshotReader, error) {
	si, rec, err := e.loadSnapshot(ctx, snapshotID)
	if err != nil {
		return nil, fmt.Errorf("open snapshot: %w", err)
	}
	return &SnapshotReader{e: e, info: si, rec: rec, cache: newPageCache(e, rec, 64)}, nil
}

// Info returns the snapshot's catalogue entry.
func (r *SnapshotReader) Info() SnapshotInfo { return r.info }

// Size returns the snapshot's volume size in bytes.
func (r *SnapshotReader) Size() int64 { return r.rec.Size }

// BlockSize returns the snapshot's block size.
func (r *SnapshotReader) BlockSize() int64 { return r.rec.BlockSize }

// ReadAt implements io.ReaderAt.
func (r *SnapshotReader) ReadAt(p []byte, off int64) (int, error) {
	return r.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads from the snapshot, fetching chunks as needed.
func (r *SnapshotReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read snapshot %s at %d: %w", r.info.ID, off, ErrOutOfRange)
	}
	if off >= r.rec.Size {
		return 0, io.EOF
	}
	n := int64(len(p))
	var eof error
	if off+n > r.rec.Size {
		n, eof = r.rec.Size-off, io.EOF
	}
	bs := r.rec.BlockSize
	var buf []byte
	for pos := int64(0); pos < n; {
		b := (off + pos) / bs
		bOff := (off + pos) % bs
		l := min(bs-bOff, n-pos)
		id, err := r.cache.entry(ctx, b)
		if err != nil {
			return int(pos), fmt.Errorf("read snapshot %s: %w", r.info.ID, err)
		}
		if id.IsZero() {
			clear(p[pos : pos+l])
		} else {
			if buf == nil {
				buf = make([]byte, bs)
			}
			if err := r.e.readChunkInto(ctx, id, buf); err != nil {
				return int(pos), fmt.Errorf("read snapshot %s block %d: %w", r.info.ID, b, err)
			}
			copy(p[pos:pos+l], buf[bOff:])
		}
		pos += l
	}
	return int(n), eof
}

// Extents reports data and hole ranges of [off, off+n) at block granularity.
func (r *SnapshotReader) Extents(ctx context.Context, off, n int64) ([]Extent, error) {
	if off < 0 || n < 0 || off+n > r.rec.Size {
		return nil, fmt.Errorf("extents of snapshot %s: %w", r.info.ID, ErrOutOfRange)
	}
	var out []Extent
	bs := r.rec.BlockSize
	for pos := off; pos < off+n; {
		b := pos / bs
		end := min((b+1)*bs, off+n)
		var id chunk.ID
		if r.rec.Pages[b/EntriesPerPage].IsZero() {
			// Skip the whole hole page.
			end = min((b/EntriesPerPage+1)*EntriesPerPage*bs, off+n)
		} else {
			var err error
			if id, err = r.cache.entry(ctx, b); err != nil {
				return nil, fmt.Errorf("extents of snapshot %s: %w", r.info.ID, err)
			}
		}
		hole := id.IsZero()
		if k := len(out); k > 0 && out[k-1].Hole == hole {
			out[k-1].Length += end - pos
		} else {
			out = append(out, Extent{Offset: pos, Length: end - pos, Hole: hole})
		}
		pos = end
	}
	return out, nil
}

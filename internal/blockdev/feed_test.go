package blockdev

import (
	"context"
	"errors"
	"slices"
	"testing"

	"coffer/internal/chunk"
)

// TestBlockFeed drains a snapshot's block feed: every taken block once, in
// order, with its page; a page rebuilt without taken blocks (the volume
// grew past the parent's last page) handed out alone (b < 0); a page the
// snapshot reuses (no taken block, same length as the parent's) counted
// and never handed out; and a cancelled context ends the feed.
func TestBlockFeed(t *testing.T) {
	ctx := context.Background()
	const bs = 4 << 10
	env := newTestEnv(t, Options{BlockSize: bs, Workers: 2})
	const nb = 3*EntriesPerPage + 10 // pages 0-2 full, page 3 of 10 blocks
	v, err := env.e.CreateVolume(ctx, "vol", nb*bs)
	if err != nil {
		t.Fatal(err)
	}
	taken := []int64{0, 5, EntriesPerPage - 1, 3*EntriesPerPage + 2, nb - 1}
	s := &snapState{taken: newBitset(nb)}
	for _, b := range taken {
		s.taken.set(b)
	}
	// The parent held 2 pages and 30 blocks of a third: page 1 is reused
	// (no taken block, the same length), page 2 grew from 30 blocks to a
	// full page and is rebuilt without blocks of its own. Its pages are
	// holes, so the feed reads nothing.
	parent := &record{Size: (2*EntriesPerPage + 30) * bs, BlockSize: bs, Pages: make([]chunk.ID, 3)}
	feed := &blockFeed{v: v, s: s, parent: parent, nb: nb, np: pagesFor(nb)}
	type got struct{ p, b int64 }
	var out []got
	remaining := map[int64]int64{}
	for {
		pg, b, err := feed.next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if pg == nil {
			break
		}
		out = append(out, got{pg.p, b})
		remaining[pg.p] = pg.remaining.Load()
		if b >= 0 && (b < pg.p*EntriesPerPage || b >= (pg.p+1)*EntriesPerPage) {
			t.Errorf("block %d handed out with page %d", b, pg.p)
		}
	}
	want := []got{{0, 0}, {0, 5}, {0, EntriesPerPage - 1}, {2, -1}, {3, 3*EntriesPerPage + 2}, {3, nb - 1}}
	if !slices.Equal(out, want) {
		t.Errorf("feed handed out %v, want %v", out, want)
	}
	if remaining[0] != 3 || remaining[2] != 0 || remaining[3] != 2 {
		t.Errorf("pages' blocks to store %v, want 3 in page 0, 0 in page 2, 2 in page 3", remaining)
	}
	if feed.pagesReused != 1 {
		t.Errorf("%d pages reused, want 1 (page 1)", feed.pagesReused)
	}
	if pg, _, err := feed.next(ctx); pg != nil || err != nil {
		t.Errorf("drained feed gave page %v, error %v", pg, err)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	feed = &blockFeed{v: v, s: s, nb: nb, np: pagesFor(nb)}
	if _, _, err := feed.next(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("feed with a cancelled context: %v, want context.Canceled", err)
	}
}

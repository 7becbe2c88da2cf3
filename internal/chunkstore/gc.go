package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"coffer/internal/blobstore"
	"coffer/internal/chunk"
)

// MarkFunc reports every chunk ID that is still referenced by calling mark
// for it (calls may come from several goroutines). The block engine walks
// every live snapshot manifest and hydrating volume.
type MarkFunc func(ctx context.Context, mark func(chunk.ID)) error

// DefaultSafetyMargin is the default GCOptions.SafetyMargin.
const DefaultSafetyMargin = 4 * time.Hour

// DefaultRewriteThreshold is the default GCOptions.RewriteThreshold.
const DefaultRewriteThreshold = 0.25

// GCOptions tune GC.
type GCOptions struct {
	// SafetyMargin protects recent writes: packs created less than the
	// margin before the run started are not touched, and a chunk found
	// unreferenced is only deleted by a later run at least the margin after
	// the run that condemned it. Every backup must commit the manifests
	// that reference the chunks it wrote or deduplicated within this margin.
	// Default DefaultSafetyMargin.
	SafetyMargin time.Duration
	// RewriteThreshold is the share of a pack's bytes that must be
	// deletable before the pack is rewritten without them. Default
	// DefaultRewriteThreshold. Fully dead packs are always deleted.
	RewriteThreshold float64
	// DryRun computes the report without changing anything.
	DryRun bool
}

// GCReport says what a GC run did.
type GCReport struct {
	Start          time.Time // the run's start, recorded before marking
	Marked         int       // distinct chunk IDs marked live
	Condemned      int       // chunks newly found unreferenced (deletable from the next run on)
	Revived        int       // condemned chunks found referenced again
	DeletedChunks  int       // chunks removed from the index
	PacksDeleted   int       // packs deleted whole (dead or rewritten)
	PacksRewritten int       // packs whose live chunks were copied to new packs
	PacksWritten   int       // new packs written by rewriting
	OrphansDeleted int       // unindexed packs deleted
	BytesDeleted   int64     // bytes of deleted packs
	BytesWritten   int64     // bytes of new packs
	BytesReclaimed int64     // BytesDeleted - BytesWritten
	// Problems lists packs that could not be rewritten because a chunk to
	// keep failed its check (run Verify); they are left as they were.
	Problems []Problem
}

// GC deletes chunks that mark does not reach, in two cycles: a run condemns
// unreferenced chunks (they stay readable but no longer deduplicate), and a
// later run, at least the safety margin after, deletes those still
// unreferenced, deleting packs that hold nothing else and rewriting packs
// whose deletable share passes the threshold. It runs concurrently with Put,
// Flush and Get; one GC runs at a time per Store. The protocol is described
// in docs/design.md ("Garbage collection").
func (s *Store) GC(ctx context.Context, mark MarkFunc, opts GCOptions) (GCReport, error) {
	if opts.SafetyMargin <= 0 {
		opts.SafetyMargin = DefaultSafetyMargin
	}
	if opts.RewriteThreshold <= 0 {
		opts.RewriteThreshold = DefaultRewriteThreshold
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()

	// Record the start before marking: everything written after it is newer
	// than the cutoff and is not looked at.
	g := &gcRun{s: s, opts: opts}
	g.rep.Start = s.clock.Now()
	g.startNs = g.rep.Start.UnixNano()
	g.cutoff = g.rep.Start.Add(-opts.SafetyMargin)

	live := make(map[chunk.ID]struct{})
	var liveMu sync.Mutex
	err := mark(ctx, func(id chunk.ID) {
		liveMu.Lock()
		live[id] = struct{}{}
		liveMu.Unlock()
	})
	if err != nil {
		return g.rep, fmt.Errorf("gc: mark: %w", err)
	}
	g.live = live
	g.rep.Marked = len(live)

	// Packs this Store wrote and has yet to index are not orphans. Taken
	// before the index's packs: a pack that leaves this set is in the
	// index by then.
	waiting := s.unindexedPacks()
	packs, err := s.index.Packs(ctx)
	if err != nil {
		return g.rep, fmt.Errorf("gc: list indexed packs: %w", err)
	}
	indexed := make(map[string]bool, len(packs))
	for _, name := range packs {
		indexed[name] = true
		if err := g.sweepPack(ctx, name); err != nil {
			return g.finish(), fmt.Errorf("gc: %w", err)
		}
	}
	if err := g.commitRewrite(ctx); err != nil {
		return g.finish(), fmt.Errorf("gc: %w", err)
	}

	// Packs no index entry points to (a write whose indexing failed, a
	// superseded copy, an interrupted rewrite) go once they are old enough.
	var orphans []blobstore.Info
	err = s.blobs.List(ctx, packPrefix, func(in blobstore.Info) error {
		if created, ok := packCreated(in.Name); ok && !indexed[in.Name] && !waiting[in.Name] && !created.After(g.cutoff) {
			orphans = append(orphans, in)
		}
		return nil
	})
	if err != nil {
		return g.finish(), fmt.Errorf("gc: list packs: %w", err)
	}
	for _, in := range orphans {
		if opts.DryRun {
			g.rep.OrphansDeleted++
			g.rep.BytesDeleted += in.Size
			continue
		}
		// Recheck: a pack can gain entries only by RebuildIndex (excluded
		// by gcMu) or by being written, which makes it young.
		if err := s.blobs.Delete(ctx, in.Name); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
			return g.finish(), fmt.Errorf("gc: delete orphan pack: %w", err)
		}
		g.rep.OrphansDeleted++
		g.rep.BytesDeleted += in.Size
	}
	return g.finish(), nil
}

// gcRun is the state of one GC run.
type gcRun struct {
	s       *Store
	opts    GCOptions
	rep     GCReport
	startNs int64
	cutoff  time.Time
	live    map[chunk.ID]struct{}

	// The rewrite pack being filled with chunks kept from rewritten packs,
	// and the packs it drains (deleted once it is committed).
	rw      *pack
	sources map[string][]Entry // kept entries per source pack
	drained []drainedPack
}

type drainedPack struct {
	name string
	ids  []chunk.ID // every entry the pack had
	size int64
}

func (g *gcRun) finish() GCReport {
	g.rep.BytesReclaimed = g.rep.BytesDeleted - g.rep.BytesWritten
	return g.rep
}

// sweepPack condemns, revives, deletes or rewrites the chunks of one pack.
func (g *gcRun) sweepPack(ctx context.Context, name string) error {
	s := g.s
	created, ok := packCreated(name)
	if !ok || created.After(g.cutoff) {
		return nil // young (or foreign) packs are never touched
	}
	entries, err := s.index.PackEntries(ctx, name)
	if err != nil {
		return fmt.Errorf("pack %s: index entries: %w", name, err)
	}
	var (
		condemn, revive, all []chunk.ID
		keep                 []Entry
		deletable            int
		keptBytes            int64
	)
	cutoffNs := g.cutoff.UnixNano()
	for _, e := range entries {
		all = append(all, e.ID)
		_, isLive := g.live[e.ID]
		switch {
		case isLive && e.DeletedAt != 0:
			revive = append(revive, e.ID)
			e.DeletedAt = 0
		case isLive:
		case e.DeletedAt == 0:
			condemn = append(condemn, e.ID)
			e.DeletedAt = g.startNs
		case e.DeletedAt <= cutoffNs:
			deletable++
			continue
		}
		keep = append(keep, e)
		keptBytes += int64(e.Length)
	}
	g.rep.Condemned += len(condemn)
	g.rep.Revived += len(revive)
	if !g.opts.DryRun {
		if err := s.index.SetDeleted(ctx, name, revive, 0); err != nil {
			return fmt.Errorf("pack %s: revive: %w", name, err)
		}
		if err := s.index.SetDeleted(ctx, name, condemn, g.startNs); err != nil {
			return fmt.Errorf("pack %s: condemn: %w", name, err)
		}
	}
	if deletable == 0 {
		return nil
	}
	info, err := s.blobs.Stat(ctx, name)
	if err != nil {
		return fmt.Errorf("pack %s: %w", name, err)
	}
	if len(keep) == 0 {
		g.rep.DeletedChunks += len(all)
		g.rep.PacksDeleted++
		g.rep.BytesDeleted += info.Size
		if g.opts.DryRun {
			return nil
		}
		if err := s.index.Delete(ctx, name, all); err != nil {
			return fmt.Errorf("pack %s: delete entries: %w", name, err)
		}
		if err := s.blobs.Delete(ctx, name); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
			return fmt.Errorf("pack %s: %w", name, err)
		}
		return nil
	}
	payload := info.Size - headerSize - footerSize - trailerHeadSize - int64(len(entries))*entrySize
	if payload <= 0 || float64(payload-keptBytes)/float64(payload) < g.opts.RewriteThreshold {
		return nil
	}
	g.rep.PacksRewritten++
	g.rep.DeletedChunks += deletable
	if g.opts.DryRun {
		return nil
	}
	data, err := s.blobs.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("pack %s: %w", name, err)
	}
	for _, e := range keep {
		end := e.Offset + int64(e.Length)
		if end > int64(len(data)) {
			g.rep.Problems = append(g.rep.Problems, Problem{Pack: name, Chunk: e.ID, Err: fmt.Errorf("record beyond the pack: %w", ErrCorrupt)})
			g.rep.PacksRewritten--
			g.rep.DeletedChunks -= deletable
			return nil
		}
		if _, err := s.decode(e.trailer(), data[e.Offset:end], name); err != nil {
			g.rep.Problems = append(g.rep.Problems, Problem{Pack: name, Chunk: e.ID, Err: err})
			g.rep.PacksRewritten--
			g.rep.DeletedChunks -= deletable
			return nil
		}
	}
	if g.rw == nil {
		g.rw = &pack{buf: packHeader()}
		g.sources = make(map[string][]Entry)
	}
	for _, e := range keep {
		stored := data[e.Offset : e.Offset+int64(e.Length)]
		te := e.trailer()
		te.Offset = int64(len(g.rw.buf))
		g.rw.buf = append(g.rw.buf, stored...)
		g.rw.entries = append(g.rw.entries, te)
		ne := e
		ne.Offset = te.Offset
		g.sources[name] = append(g.sources[name], ne)
	}
	g.drained = append(g.drained, drainedPack{name: name, ids: all, size: info.Size})
	if len(g.rw.buf) >= s.packSize {
		return g.commitRewrite(ctx)
	}
	return nil
}

// commitRewrite writes the rewrite pack, points the index at it (only for
// entries still in their source pack), and then deletes the drained packs.
// A crash at any point leaves every chunk reachable: before the index moves
// the new pack is an orphan; after it the old packs are.
func (g *gcRun) commitRewrite(ctx context.Context) error {
	if g.rw == nil {
		return nil
	}
	s := g.s
	name := newPackName(s.clock.Now())
	data := appendTrailer(g.rw.buf, s.clock.Now().UnixNano(), g.rw.entries)
	if err := s.blobs.Put(ctx, name, data); err != nil {
		return fmt.Errorf("write rewritten pack %s: %w", name, err)
	}
	g.rep.PacksWritten++
	g.rep.BytesWritten += int64(len(data))
	for _, d := range g.drained {
		moved := g.sources[d.name]
		for i := range moved {
			moved[i].Pack = name
		}
		if err := s.index.Move(ctx, d.name, moved); err != nil {
			return fmt.Errorf("move chunks of pack %s to %s: %w", d.name, name, err)
		}
	}
	for _, d := range g.drained {
		if err := s.index.Delete(ctx, d.name, d.ids); err != nil {
			return fmt.Errorf("pack %s: delete entries: %w", d.name, err)
		}
		if err := s.blobs.Delete(ctx, d.name); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
			return fmt.Errorf("pack %s: %w", d.name, err)
		}
		g.rep.PacksDeleted++
		g.rep.BytesDeleted += d.size
	}
	g.rw, g.sources, g.drained = nil, nil, nil
	return nil
}

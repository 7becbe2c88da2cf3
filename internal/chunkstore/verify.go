package chunkstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"coffer/internal/blobstore"
	"coffer/internal/chunk"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Concurrency is how many packs are checked at once (each is held in
	// memory whole). Default GOMAXPROCS.
	Concurrency int
}

// Problem is one finding of Verify or VerifyChunks.
type Problem struct {
	Pack  string   // the pack concerned; empty if the chunk is not indexed
	Chunk chunk.ID // the chunk concerned; zero for a problem with the pack itself
	Err   error    // wraps ErrCorrupt or ErrNotFound
}

func (p Problem) String() string {
	if p.Chunk.IsZero() {
		return fmt.Sprintf("pack %s: %v", p.Pack, p.Err)
	}
	return fmt.Sprintf("pack %s chunk %s: %v", p.Pack, p.Chunk, p.Err)
}

// Report is the result of Verify or VerifyChunks.
type Report struct {
	Packs  int   // packs read
	Chunks int   // chunks checked
	Bytes  int64 // bytes read
	// Problems lists every finding, in pack order.
	Problems []Problem
	// CorruptPacks names the packs with a problem, sorted.
	CorruptPacks []string
	// CorruptChunks lists the chunks that cannot be read back intact
	// (missing, undecodable or not matching their ID), sorted.
	CorruptChunks []chunk.ID
	// Unindexed names packs in the blob store that no index entry points
	// to (left by an interrupted write or GC; GC deletes them after the
	// safety margin). They are not read and are not a problem.
	Unindexed []string
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// add records problems; it is not safe for concurrent use.
func (r *Report) add(ps ...Problem) {
	r.Problems = append(r.Problems, ps...)
}

// finish sorts the problem lists and derives the corrupt sets.
func (r *Report) finish() {
	slices.SortStableFunc(r.Problems, func(a, b Problem) int {
		if c := compareStrings(a.Pack, b.Pack); c != 0 {
			return c
		}
		return bytes.Compare(a.Chunk[:], b.Chunk[:])
	})
	packs := make(map[string]bool)
	chunks := make(map[chunk.ID]bool)
	for _, p := range r.Problems {
		if p.Pack != "" {
			packs[p.Pack] = true
		}
		if !p.Chunk.IsZero() {
			chunks[p.Chunk] = true
		}
	}
	r.CorruptPacks = r.CorruptPacks[:0]
	for p := range packs {
		r.CorruptPacks = append(r.CorruptPacks, p)
	}
	slices.Sort(r.CorruptPacks)
	r.CorruptChunks = r.CorruptChunks[:0]
	for c := range chunks {
		r.CorruptChunks = append(r.CorruptChunks, c)
	}
	slices.SortFunc(r.CorruptChunks, func(a, b chunk.ID) int { return bytes.Compare(a[:], b[:]) })
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Verify re-reads every indexed pack, checks its header and trailer, checks
// that the trailer agrees with the index, and checks every chunk the pack
// holds against its ID. Findings go into the Report; the error is for
// failures that stop the check (index or backend errors, cancellation).
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (Report, error) {
	var rep Report
	waiting := s.unindexedPacks() // written, about to be indexed: not unindexed
	packs, err := s.index.Packs(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify: list indexed packs: %w", err)
	}
	indexed := make(map[string]bool, len(packs))
	for _, p := range packs {
		indexed[p] = true
	}
	err = s.blobs.List(ctx, packPrefix, func(in blobstore.Info) error {
		if !indexed[in.Name] && !waiting[in.Name] {
			rep.Unindexed = append(rep.Unindexed, in.Name)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("verify: list packs: %w", err)
	}

	workers := opts.Concurrency
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		work = make(chan string)
	)
	for range workers {
		wg.Go(func() {
			for name := range work {
				r, err := s.verifyPack(ctx, name)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				rep.Packs++
				rep.Chunks += r.Chunks
				rep.Bytes += r.Bytes
				rep.add(r.Problems...)
				mu.Unlock()
			}
		})
	}
	for _, name := range packs {
		if ctx.Err() != nil {
			break
		}
		work <- name
	}
	close(work)
	wg.Wait()
	rep.finish()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	return rep, nil
}

// verifyPack checks one pack against its index entries.
func (s *Store) verifyPack(ctx context.Context, name string) (Report, error) {
	var rep Report
	entries, err := s.index.PackEntries(ctx, name)
	if err != nil {
		return rep, fmt.Errorf("pack %s: index entries: %w", name, err)
	}
	data, err := s.blobs.Get(ctx, name)
	if errors.Is(err, blobstore.ErrNotFound) {
		rep.add(Problem{Pack: name, Err: fmt.Errorf("pack missing: %w", ErrCorrupt)})
		for _, e := range entries {
			rep.add(Problem{Pack: name, Chunk: e.ID, Err: fmt.Errorf("pack missing: %w", ErrCorrupt)})
		}
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("read pack %s: %w", name, err)
	}
	rep.Bytes = int64(len(data))
	checked := make(map[chunk.ID]bool)
	check := func(e trailerEntry) {
		if checked[e.ID] {
			return
		}
		checked[e.ID] = true
		rep.Chunks++
		end := e.Offset + int64(e.Length)
		if e.Offset < 0 || end > int64(len(data)) {
			rep.add(Problem{Pack: name, Chunk: e.ID, Err: fmt.Errorf("record %d+%d beyond the %d-byte pack: %w", e.Offset, e.Length, len(data), ErrCorrupt)})
			return
		}
		if _, err := s.decode(e, data[e.Offset:end], name); err != nil {
			rep.add(Problem{Pack: name, Chunk: e.ID, Err: err})
		}
	}
	tr, err := decodePack(data)
	if err != nil {
		rep.add(Problem{Pack: name, Err: fmt.Errorf("%w: %w", ErrCorrupt, err)})
	} else {
		byID := make(map[chunk.ID]trailerEntry, len(tr.Entries))
		for _, te := range tr.Entries {
			byID[te.ID] = te
		}
		for _, e := range entries {
			te, ok := byID[e.ID]
			if !ok || te != e.trailer() {
				rep.add(Problem{Pack: name, Chunk: e.ID, Err: fmt.Errorf("index entry %+v disagrees with the trailer: %w", e.trailer(), ErrCorrupt)})
			}
		}
		for _, te := range tr.Entries {
			check(te)
		}
	}
	// Check chunks by their index location too (the trailer may be the
	// damaged part, and the index is what Get uses).
	for _, e := range entries {
		check(e.trailer())
	}
	return rep, nil
}

// VerifyChunks checks that each of ids can be read back intact, the way Get
// reads it. Chunks that are not stored are reported as problems with an
// empty Pack.
func (s *Store) VerifyChunks(ctx context.Context, ids []chunk.ID) (Report, error) {
	var rep Report
	const batch = 512
	workers := runtime.GOMAXPROCS(0)
	for start := 0; start < len(ids); start += batch {
		ids := ids[start:min(start+batch, len(ids))]
		var (
			mu   sync.Mutex
			errs []error
			wg   sync.WaitGroup
			next = 0
		)
		for range workers {
			wg.Go(func() {
				for {
					mu.Lock()
					if next == len(ids) {
						mu.Unlock()
						return
					}
					id := ids[next]
					next++
					mu.Unlock()
					pack, n, err := s.getForVerify(ctx, id)
					mu.Lock()
					rep.Chunks++
					rep.Bytes += int64(n)
					switch {
					case errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt):
						rep.add(Problem{Pack: pack, Chunk: id, Err: err})
					case err != nil:
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			rep.finish()
			return rep, fmt.Errorf("verify chunks: %w", err)
		}
	}
	rep.finish()
	return rep, nil
}

// getForVerify reads a chunk like Get and says which pack it came from.
func (s *Store) getForVerify(ctx context.Context, id chunk.ID) (string, int, error) {
	found, err := s.index.Lookup(ctx, []chunk.ID{id})
	if err != nil {
		return "", 0, err
	}
	pack := found[id].Pack
	data, err := s.Get(ctx, id)
	return pack, len(data), err
}

// RebuildIndex replaces the index with what the pack trailers say. Packs
// whose trailer cannot be decoded are skipped and named in the returned
// error; the index is rebuilt from the others. It must not run while another
// process writes to the same store; within this process it excludes GC.
func (s *Store) RebuildIndex(ctx context.Context) error {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	if err := s.index.Clear(ctx); err != nil {
		return fmt.Errorf("rebuild index: clear: %w", err)
	}
	var bad []error
	err := s.blobs.List(ctx, packPrefix, func(in blobstore.Info) error {
		tr, err := s.readTrailer(ctx, in)
		if errors.Is(err, errFormat) {
			bad = append(bad, err)
			return nil
		}
		if err != nil {
			return err
		}
		entries := make([]Entry, len(tr.Entries))
		for i, e := range tr.Entries {
			entries[i] = Entry{ID: e.ID, Pack: in.Name, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength, Compression: e.Compression}
		}
		if err := s.indexAdd(ctx, entries); err != nil {
			return fmt.Errorf("index pack %s: %w", in.Name, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild index: %w", err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("rebuild index: %d packs skipped: %w", len(bad), errors.Join(bad...))
	}
	return nil
}

// readTrailer reads and decodes a pack's trailer with two ranged reads.
func (s *Store) readTrailer(ctx context.Context, in blobstore.Info) (packTrailer, error) {
	if in.Size < headerSize+trailerHeadSize+footerSize {
		return packTrailer{}, fmt.Errorf("pack %s: %w: %d bytes is too short", in.Name, errFormat, in.Size)
	}
	f, err := s.blobs.GetRange(ctx, in.Name, in.Size-footerSize, footerSize)
	if err != nil {
		return packTrailer{}, fmt.Errorf("read pack %s footer: %w", in.Name, err)
	}
	tlen, sum, err := decodeFooter(f, in.Size)
	if err != nil {
		return packTrailer{}, fmt.Errorf("pack %s: %w", in.Name, err)
	}
	start := in.Size - footerSize - tlen
	t, err := s.blobs.GetRange(ctx, in.Name, start, tlen)
	if err != nil {
		return packTrailer{}, fmt.Errorf("read pack %s trailer: %w", in.Name, err)
	}
	tr, err := decodeTrailer(t, sum, start)
	if err != nil {
		return packTrailer{}, fmt.Errorf("pack %s: %w", in.Name, err)
	}
	return tr, nil
}

package server

import (
	"context"
	"fmt"
	"sync"

	"coffer/internal/blockdev"
	"coffer/internal/chunk"
	"coffer/internal/chunkstore"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/tenant"
)

// maintenance runs the storage engine's whole-store operations for the
// Coffer.Admin API: verify, garbage collection and index rebuild. They
// exclude each other (one at a time per server); backups and restores go on
// meanwhile, protected by the chunk store's GC safety margin.
type maintenance struct {
	chunks *chunkstore.Store
	engine *blockdev.Engine
	// snapshotNames maps engine snapshot IDs to the resource IDs users know
	// them by (Compute snapshots); nil leaves engine IDs.
	snapshotNames func(ctx context.Context, ids []string) map[string]string
	mu            sync.Mutex
}

// VerifyProblem is one finding of a verify run.
type VerifyProblem struct {
	Pack      string   `json:"pack,omitempty"`
	Chunk     string   `json:"chunk,omitempty"`
	Error     string   `json:"error"`
	Snapshots []string `json:"snapshots,omitempty"`
}

// VerifyResult is the result of POST /providers/Coffer.Admin/verify.
type VerifyResult struct {
	OK           bool            `json:"ok"`
	Packs        int             `json:"packs"`
	Chunks       int             `json:"chunks"`
	Bytes        int64           `json:"bytes"`
	CorruptPacks []string        `json:"corruptPacks"`
	Problems     []VerifyProblem `json:"problems"`
	// AffectedSnapshots lists every snapshot that references a corrupt chunk.
	AffectedSnapshots []string `json:"affectedSnapshots"`
}

// Verify re-reads every pack, checks every chunk against its ID, and names
// the snapshots that reference what is damaged.
func (m *maintenance) Verify(ctx context.Context) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rep, err := m.chunks.Verify(ctx, chunkstore.VerifyOptions{})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	res := VerifyResult{OK: rep.OK(), Packs: rep.Packs, Chunks: rep.Chunks, Bytes: rep.Bytes,
		CorruptPacks: append([]string{}, rep.CorruptPacks...), Problems: []VerifyProblem{}, AffectedSnapshots: []string{}}
	ids := append([]chunk.ID(nil), rep.CorruptChunks...)
	refs, err := m.engine.SnapshotsReferencing(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	names := map[string]string{}
	if m.snapshotNames != nil {
		var all []string
		for _, ss := range refs {
			all = append(all, ss...)
		}
		names = m.snapshotNames(ctx, all)
	}
	name := func(s string) string {
		if n, ok := names[s]; ok {
			return n
		}
		return s
	}
	affected := map[string]bool{}
	for _, p := range rep.Problems {
		vp := VerifyProblem{Pack: p.Pack, Error: p.Err.Error()}
		if !p.Chunk.IsZero() {
			vp.Chunk = p.Chunk.String()
			for _, s := range refs[p.Chunk] {
				vp.Snapshots = append(vp.Snapshots, name(s))
				affected[name(s)] = true
			}
		}
		res.Problems = append(res.Problems, vp)
	}
	for s := range affected {
		res.AffectedSnapshots = append(res.AffectedSnapshots, s)
	}
	sortStrings(res.AffectedSnapshots)
	return res, nil
}

// GC collects garbage: chunks no live snapshot or hydrating volume
// references go after two runs separated by the safety margin.
func (m *maintenance) GC(ctx context.Context) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rep, err := m.chunks.GC(ctx, m.engine.MarkLive, chunkstore.GCOptions{})
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	problems := []string{}
	for _, p := range rep.Problems {
		problems = append(problems, fmt.Sprintf("%s %s: %v", p.Pack, p.Chunk.Short(), p.Err))
	}
	return map[string]any{"marked": rep.Marked, "condemned": rep.Condemned, "revived": rep.Revived,
		"deletedChunks": rep.DeletedChunks, "packsDeleted": rep.PacksDeleted, "packsRewritten": rep.PacksRewritten,
		"bytesDeleted": rep.BytesDeleted, "bytesWritten": rep.BytesWritten, "bytesReclaimed": rep.BytesReclaimed,
		"problems": problems}, nil
}

// RebuildIndex rebuilds the chunk index from the packs' trailers alone.
func (m *maintenance) RebuildIndex(ctx context.Context) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.chunks.RebuildIndex(ctx); err != nil {
		return nil, fmt.Errorf("rebuild index: %w", err)
	}
	st, err := m.chunks.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("rebuild index: %w", err)
	}
	return map[string]any{"chunks": st.Chunks, "packs": st.Packs, "storedBytes": st.StoredBytes, "rawBytes": st.RawBytes}, nil
}

// Stats reports the chunk store's size.
func (m *maintenance) Stats(ctx context.Context) (any, error) {
	st, err := m.chunks.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return map[string]any{"chunks": st.Chunks, "packs": st.Packs, "storedBytes": st.StoredBytes, "rawBytes": st.RawBytes,
		"pendingChunks": st.PendingChunks, "condemned": st.Condemned}, nil
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// snapshotResourceIDs maps block-engine snapshot IDs (a Compute snapshot's
// uniqueId) to the snapshots' resource IDs, across every subscription.
func (s *Server) snapshotResourceIDs(ctx context.Context, ids []string) map[string]string {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]string{}
	var subs []tenant.Subscription
	if err := s.store.View(ctx, func(tx store.Tx) error {
		var err error
		subs, err = s.Tenant.ListSubscriptions(ctx, tx)
		return err
	}); err != nil {
		return out
	}
	for _, sub := range subs {
		sns, err := s.Compute.ListSnapshots(ctx, resource.SubscriptionID(sub.ID))
		if err != nil {
			continue
		}
		for _, sn := range sns {
			if want[sn.UniqueID] {
				out[sn.UniqueID] = sn.ID
			}
		}
	}
	return out
}

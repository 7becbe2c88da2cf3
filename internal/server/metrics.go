package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"coffer/internal/chunkstore"
	"coffer/internal/nbd"
	"coffer/internal/prom"
	"coffer/internal/store"
)

// registerMetrics adds the storage side's metrics to /metrics: the
// repository (chunk store) and its deduplication, the restored disks that
// are hydrating, the last garbage collection and verify runs, and NBD.
func (s *Server) registerMetrics() {
	s.nbdMetrics = nbd.NewMetrics()
	s.API.AddMetrics(s.nbdMetrics.WriteMetrics)
	s.API.AddMetrics(s.writeRepositoryMetrics)
	s.API.AddMetrics(s.writeHydrationMetrics)
	s.API.AddMetrics(s.writeMaintenanceMetrics)
}

// repoStatsTTL is how long the repository's figures (an aggregate over the
// whole chunk index) are reused between scrapes.
const repoStatsTTL = 30 * time.Second

type repoStats struct {
	mu      sync.Mutex
	at      time.Time
	st      chunkstore.Stats
	snaps   int64
	changed int64
	err     error
}

func (s *Server) writeRepositoryMetrics(w io.Writer) {
	if s.Chunks == nil {
		return
	}
	rs := &s.repo
	rs.mu.Lock()
	now := s.cfg.Clock.Now()
	if rs.at.IsZero() || now.Sub(rs.at) >= repoStatsTTL || now.Before(rs.at) {
		ctx := context.Background()
		rs.st, rs.err = s.Chunks.Stats(ctx)
		if rs.err == nil && s.Compute != nil {
			rs.snaps, rs.changed, rs.err = s.Compute.SnapshotTotals(ctx)
		}
		rs.at = now
	}
	st, snaps, changed, err := rs.st, rs.snaps, rs.changed, rs.err
	rs.mu.Unlock()
	if err != nil {
		s.log.Warn("repository metrics", "err", err)
		return
	}
	prom.Family(w, "coffer_repository_stored_bytes", prom.Gauge, "Bytes the repository's chunks take in packs (after compression).", float64(st.StoredBytes))
	prom.Family(w, "coffer_repository_raw_bytes", prom.Gauge, "Bytes of the repository's distinct chunks before compression.", float64(st.RawBytes))
	prom.Family(w, "coffer_repository_chunks", prom.Gauge, "Distinct chunks in the repository.", float64(st.Chunks))
	prom.Family(w, "coffer_repository_packs", prom.Gauge, "Packs in the repository.", float64(st.Packs))
	prom.Family(w, "coffer_repository_condemned_chunks", prom.Gauge, "Chunks garbage collection found unreferenced, deleted by its next run.", float64(st.Condemned))
	prom.Family(w, "coffer_repository_pending_bytes", prom.Gauge, "Bytes of chunks written but not yet committed in a pack.", float64(st.PendingBytes))
	prom.Family(w, "coffer_snapshots", prom.Gauge, "Snapshots (Microsoft.Compute) whose data is in the repository.", float64(snaps))
	prom.Family(w, "coffer_snapshot_changed_bytes", prom.Gauge, "Bytes all snapshots stored as changed blocks, before deduplication and compression.", float64(changed))
	added := s.Chunks.Counters()
	prom.Family(w, "coffer_repository_added_packs_total", prom.Counter, "Packs of new chunks written to the repository since the server started.", float64(added.Packs))
	prom.Family(w, "coffer_repository_added_chunks_total", prom.Counter, "New (not deduplicated) chunks added to the repository since the server started.", float64(added.Chunks))
	prom.Family(w, "coffer_repository_added_raw_bytes_total", prom.Counter, "Bytes of the new chunks added to the repository since the server started, before compression.", float64(added.RawBytes))
	prom.Family(w, "coffer_repository_added_bytes_total", prom.Counter, "Bytes the new chunks added to the repository since the server started take in packs (after deduplication and compression).", float64(added.StoredBytes))
	dedup, comp := 1.0, 1.0
	if st.RawBytes > 0 && changed > 0 {
		dedup = float64(changed) / float64(st.RawBytes)
	}
	if st.StoredBytes > 0 {
		comp = float64(st.RawBytes) / float64(st.StoredBytes)
	}
	prom.Family(w, "coffer_repository_deduplication_ratio", prom.Gauge, "Bytes all snapshots stored as changed blocks ÷ the repository's distinct chunk bytes (before compression).", dedup)
	prom.Family(w, "coffer_repository_compression_ratio", prom.Gauge, "The repository's distinct chunk bytes ÷ the bytes they take in packs.", comp)
}

func (s *Server) writeHydrationMetrics(w io.Writer) {
	if s.Engine == nil {
		return
	}
	hs := s.Engine.Hydrations()
	var done, total int64
	for _, h := range hs {
		done += h.DoneBytes
		total += h.TotalBytes
	}
	prom.Family(w, "coffer_hydrating_disks", prom.Gauge, "Restored disks still hydrating (copying their data from the repository).", float64(len(hs)))
	prom.Family(w, "coffer_hydration_remaining_bytes", prom.Gauge, "Bytes the hydrating disks still have to copy.", float64(total-done))
	prom.Family(w, "coffer_hydration_size_bytes", prom.Gauge, "Total size of the hydrating disks.", float64(total))
}

// maintenanceRun is the record of the last run of a maintenance operation.
type maintenanceRun struct {
	Time     time.Time     `json:"time"`
	Duration time.Duration `json:"duration"`
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
	// Verify: what it checked and found; GC: what it deleted and reclaimed.
	Packs          int   `json:"packs,omitempty"`
	Chunks         int   `json:"chunks,omitempty"`
	Bytes          int64 `json:"bytes,omitempty"`
	CorruptPacks   int   `json:"corruptPacks,omitempty"`
	Problems       int   `json:"problems,omitempty"`
	DeletedChunks  int   `json:"deletedChunks,omitempty"`
	BytesReclaimed int64 `json:"bytesReclaimed,omitempty"`
}

const kindMaintenance = "coffer.maintenance"

// recordedMaintenance records the outcome of every verify and garbage
// collection in the metadata store (so the metrics say when each last ran,
// across restarts) around the maintenance it wraps.
type recordedMaintenance struct {
	*maintenance
	s *Server
}

func (m recordedMaintenance) Verify(ctx context.Context) (any, error) {
	start := m.s.cfg.Clock.Now()
	res, err := m.maintenance.Verify(ctx)
	run := maintenanceRun{Time: start.UTC(), Duration: m.s.cfg.Clock.Now().Sub(start), OK: err == nil}
	if v, ok := res.(VerifyResult); ok {
		run.OK = run.OK && v.OK
		run.Packs, run.Chunks, run.Bytes, run.CorruptPacks, run.Problems = v.Packs, v.Chunks, v.Bytes, len(v.CorruptPacks), len(v.Problems)
		if err == nil {
			m.s.recordPointsVerified(ctx, v)
		}
	}
	m.s.recordRun(ctx, "verify", run, err)
	return res, err
}

func (m recordedMaintenance) GC(ctx context.Context) (any, error) {
	start := m.s.cfg.Clock.Now()
	res, err := m.maintenance.GC(ctx)
	run := maintenanceRun{Time: start.UTC(), Duration: m.s.cfg.Clock.Now().Sub(start), OK: err == nil}
	if v, ok := res.(map[string]any); ok {
		run.DeletedChunks, _ = v["deletedChunks"].(int)
		run.BytesReclaimed, _ = v["bytesReclaimed"].(int64)
		if p, ok := v["problems"].([]string); ok {
			run.Problems = len(p)
		}
	}
	m.s.recordRun(ctx, "gc", run, err)
	return res, err
}

func (s *Server) recordRun(ctx context.Context, what string, run maintenanceRun, err error) {
	if err != nil {
		run.Error = err.Error()
	}
	b, _ := json.Marshal(run)
	if err := s.store.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		return tx.Put(ctx, &store.Object{Kind: kindMaintenance, Key: "/maintenance/" + what, Data: b}, store.PutOptions{})
	}); err != nil {
		s.log.Warn("record the maintenance run", "run", what, "err", err)
	}
}

func (s *Server) lastRun(what string) (maintenanceRun, bool) {
	var run maintenanceRun
	found := false
	err := s.store.View(context.Background(), func(tx store.Tx) error {
		o, err := tx.Get(context.Background(), kindMaintenance, "/maintenance/"+what)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return json.Unmarshal(o.Data, &run)
	})
	return run, err == nil && found
}

func (s *Server) writeMaintenanceMetrics(w io.Writer) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	if run, ok := s.lastRun("verify"); ok {
		prom.Family(w, "coffer_verify_last_run_timestamp_seconds", prom.Gauge, "Unix time the last verify of the repository started.", float64(run.Time.Unix()))
		prom.Family(w, "coffer_verify_last_run_success", prom.Gauge, "1 if the last verify ran through and found nothing damaged.", b2f(run.OK))
		prom.Family(w, "coffer_verify_last_run_duration_seconds", prom.Gauge, "How long the last verify took.", run.Duration.Seconds())
		prom.Family(w, "coffer_verify_last_run_checked_bytes", prom.Gauge, "Bytes the last verify read.", float64(run.Bytes))
		prom.Family(w, "coffer_verify_last_run_corrupt_packs", prom.Gauge, "Damaged packs the last verify found.", float64(run.CorruptPacks))
		prom.Family(w, "coffer_verify_last_run_problems", prom.Gauge, "Problems (damaged chunks or packs) the last verify found.", float64(run.Problems))
	}
	if run, ok := s.lastRun("gc"); ok {
		prom.Family(w, "coffer_gc_last_run_timestamp_seconds", prom.Gauge, "Unix time the last garbage collection started.", float64(run.Time.Unix()))
		prom.Family(w, "coffer_gc_last_run_success", prom.Gauge, "1 if the last garbage collection ran through without problems.", b2f(run.OK && run.Problems == 0))
		prom.Family(w, "coffer_gc_last_run_duration_seconds", prom.Gauge, "How long the last garbage collection took.", run.Duration.Seconds())
		prom.Family(w, "coffer_gc_last_run_deleted_chunks", prom.Gauge, "Chunks the last garbage collection deleted.", float64(run.DeletedChunks))
		prom.Family(w, "coffer_gc_last_run_reclaimed_bytes", prom.Gauge, "Bytes the last garbage collection gave back to the blob store.", float64(run.BytesReclaimed))
	}
}

// recordPointsVerified records a repository verify's outcome on every
// recovery point (dataprotection's RecordRepositoryVerify): those whose
// snapshot references a damaged chunk failed it.
func (s *Server) recordPointsVerified(ctx context.Context, v VerifyResult) {
	if s.dp == nil {
		return
	}
	failed := map[string]string{}
	for _, p := range v.Problems {
		for _, sn := range p.Snapshots {
			if _, ok := failed[sn]; !ok {
				failed[sn] = fmt.Sprintf("chunk %s in pack %s: %s", p.Chunk, p.Pack, p.Error)
			}
		}
	}
	if err := s.dp.svc.RecordRepositoryVerify(ctx, s.cfg.Clock.Now(), failed); err != nil {
		s.log.Error("record the verify on the recovery points", "err", err)
	}
}

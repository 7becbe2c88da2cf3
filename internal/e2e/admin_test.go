package e2e

import (
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"coffer/internal/client"
)

// TestAdminVerifyGCRebuild writes a disk, snapshots it, and runs the
// Coffer.Admin maintenance operations: verify passes on a healthy store,
// and after a byte of a pack is flipped on disk it names the pack, the
// damaged chunks and the snapshot resource they belong to; the index
// rebuilt from the packs alone serves the same chunks; GC reports.
func TestAdminVerifyGCRebuild(t *testing.T) {
	ce := startCompute(t, Options{})
	c := ce.c
	const size = 8<<20 + 512
	ce.createDisk(t, "d", client.DiskSpec{UploadSizeBytes: size})
	img := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	w := ce.grant(t, client.Disks, "d", "Write")
	uploadPages(t, c, w.AccessSAS, img)
	if err := c.RevokeAccess(ce.ctx, client.Disks, "rg", "d"); err != nil {
		t.Fatal(err)
	}
	snap := ce.snapshot(t, "s1", "d")

	type verifyResult struct {
		OK                bool
		Packs, Chunks     int
		CorruptPacks      []string
		AffectedSnapshots []string
		Problems          []struct {
			Pack, Chunk, Error string
			Snapshots          []string
		}
	}
	var v verifyResult
	if err := c.Admin(ce.ctx, "verify", &v); err != nil {
		t.Fatal(err)
	}
	if !v.OK || v.Packs == 0 || v.Chunks < len(img)/(64<<10) {
		t.Fatalf("healthy verify: %+v", v)
	}
	stats, err := c.AdminStats(ce.ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Flip one byte near the start of the largest pack (the disk's data
	// blocks): inside its first chunk.
	var pack string
	var largest int64
	filepath.WalkDir(filepath.Join(ce.DataDir, "chunks"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(p, "pack") {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Size() > largest {
			pack, largest = p, info.Size()
		}
		return nil
	})
	if pack == "" {
		t.Fatal("no pack file found under the data dir")
	}
	os.Chmod(pack, 0o644)
	data, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	data[200] ^= 0xff
	if err := os.WriteFile(pack, data, 0o444); err != nil {
		t.Fatal(err)
	}
	v = verifyResult{}
	if err := c.Admin(ce.ctx, "verify", &v); err != nil {
		t.Fatal(err)
	}
	if v.OK || len(v.CorruptPacks) != 1 || !strings.Contains(pack, filepath.Base(v.CorruptPacks[0])) {
		t.Fatalf("verify after corruption: %+v (flipped %s)", v, pack)
	}
	if len(v.Problems) == 0 || v.Problems[0].Chunk == "" {
		t.Fatalf("verify must name the damaged chunk: %+v", v.Problems)
	}
	if !slices.Contains(v.AffectedSnapshots, snap.ID) || !slices.Contains(v.Problems[0].Snapshots, snap.ID) {
		t.Fatalf("verify must name the affected snapshot %s: %+v", snap.ID, v)
	}

	// The index rebuilt from pack trailers holds the same chunks.
	var rebuilt map[string]any
	if err := c.Admin(ce.ctx, "rebuildIndex", &rebuilt); err != nil {
		t.Fatal(err)
	}
	if rebuilt["chunks"] != stats["chunks"] || rebuilt["packs"] != stats["packs"] {
		t.Fatalf("rebuilt index %v, before %v", rebuilt, stats)
	}
	var gc map[string]any
	if err := c.Admin(ce.ctx, "gc", &gc); err != nil {
		t.Fatal(err)
	}
	// Every stored chunk belongs to s1 (its record, pages and blocks): GC
	// marks them all and condemns or deletes none.
	if gc["marked"] != stats["chunks"] || gc["condemned"] != float64(0) || gc["deletedChunks"] != float64(0) {
		t.Fatalf("gc report %v; the store holds %v chunks, all live", gc, stats["chunks"])
	}

	// Only tenant administrators may run maintenance.
	sp, err := c.CreateServicePrincipal(ce.ctx, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.ClientCredentials(ce.ctx, ce.Admin.TenantID, sp.ClientID, sp.ClientSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := ce.Client(tok).Admin(ce.ctx, "gc", nil); client.AsError(err) == nil || client.AsError(err).StatusCode != 403 {
		t.Fatalf("non-admin gc: %v", err)
	}
}

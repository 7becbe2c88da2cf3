package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"coffer/internal/blobstore/local"
	"coffer/internal/blobstore/location"
	"coffer/internal/blobstore/s3"
	"coffer/internal/blockdev"
	"coffer/internal/chunkstore"
	"coffer/internal/cluster"
	"coffer/internal/compute"
	"coffer/internal/resource"
)

// openStorage opens the byte side of the server: the blob store (DATA/chunks
// or the configured --blob location, in its retry, limit and metrics
// decorators), the chunk store over it with its index in the metadata
// database, the block engine under DATA/volumes and the compute provider on
// top.
func (s *Server) openStorage(ctx context.Context) error {
	cfg := s.cfg
	loc := cfg.Blob
	if loc == "" {
		loc = filepath.Join(cfg.DataDir, "chunks")
	}
	blobs, err := location.Open(ctx, loc, location.Options{Clock: cfg.Clock,
		S3: s3.Options{Endpoint: cfg.S3Endpoint, PathStyle: cfg.S3PathStyle}})
	if err != nil {
		return fmt.Errorf("open the blob store: %w", err)
	}
	if l, ok := blobs.Backend.(*local.Store); ok {
		l.Space = s.space // its no-space errors count in the monitor
	}
	s.API.AddMetrics(blobs.WriteMetrics)
	chunks, err := chunkstore.New(blobs, s.meta.Index, chunkstore.Options{Clock: cfg.Clock})
	if err != nil {
		return fmt.Errorf("open chunk store: %w", err)
	}
	engine, err := blockdev.Open(ctx, filepath.Join(cfg.DataDir, "volumes"), chunks, blobs, blockdev.Options{Clock: cfg.Clock, Space: s.space, HydrationRetry: cfg.HydrationRetry,
		Catalogue: s.store})
	if err != nil {
		return fmt.Errorf("open block engine: %w", err)
	}
	key, err := s.sharedSecret(ctx, secretGrantKey, filepath.Join(cfg.DataDir, "grant.key"), newRandomKey)
	if err != nil {
		engine.Close()
		return err
	}
	s.Chunks, s.Engine = chunks, engine
	s.Compute = &compute.Service{Store: s.store, Tenant: s.Tenant, Engine: engine, Authz: s.Authz, Clock: cfg.Clock,
		Logger: s.log, GrantKey: key,
		// A restore job shows when its disk cannot hydrate for lack of
		// space (the service exists once openDataProtection has run).
		HydrationObserver: func(ctx context.Context, diskID string, stall *resource.Error) {
			if dp := s.restores.Load(); dp != nil {
				dp.RestoredDiskHydration(ctx, diskID, stall)
			}
		}}
	if s.member.shared {
		s.Compute.Home = s.member.setHome
		s.Compute.ForgetHome = cluster.DeleteHome
		s.Compute.DeleteVolumeElsewhere = s.deleteVolumeElsewhere
		s.Compute.VolumeElsewhere = s.member.volumeElsewhere
	}
	// Disks and snapshots that an operation creates are its to finish.
	s.Compute.Finishing = s.Ops.Running
	s.Tenant.Cleaners = append(s.Tenant.Cleaners, s.Compute.Cleaner)
	s.Authz.PrincipalDeleted = s.Compute.EndGrantsOf
	if err := s.Compute.Recover(ctx); err != nil {
		engine.Close()
		return err
	}
	return nil
}

// closeStorage stops the compute provider's background work and closes the
// block engine's volumes.
func (s *Server) closeStorage() error {
	if s.Compute != nil {
		s.Compute.Close()
	}
	if s.Engine != nil {
		return s.Engine.Close()
	}
	return nil
}

// newRandomKey makes a new 32-byte key (access-grant tokens, the seal of
// notification targets' secrets).
func newRandomKey() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// loadOrCreateKey reads a 32-byte secret key file, creating it (mode 0600)
// on first start.
func loadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) < 32 {
			return nil, fmt.Errorf("key file %s is too short", path)
		}
		return b, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	b, err = newRandomKey()
	if err != nil {
		return nil, fmt.Errorf("create key %s: %w", path, err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("create key %s: %w", path, err)
	}
	return b, nil
}

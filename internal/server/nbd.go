package server

import (
	"context"
	"errors"
	"fmt"
	"net"

	"coffer/internal/blockdev"
	"coffer/internal/compute"
	"coffer/internal/nbd"
)

// resolveExport maps an NBD export name (an access grant's token) to the
// disk or snapshot it grants: read-only unless the grant allows writing.
func (s *Server) resolveExport(ctx context.Context, name string) (*nbd.Export, error) {
	a, err := s.Compute.OpenAccess(ctx, name)
	if errors.Is(err, compute.ErrUnknownGrant) || errors.Is(err, compute.ErrAccessDenied) {
		return nil, fmt.Errorf("%w: %w", nbd.ErrUnknownExport, err)
	}
	if err != nil {
		return nil, err
	}
	if a.Volume != nil {
		// Read-only also when the grant's creator may no longer write.
		ro := !a.Writable() || errors.Is(a.CheckWrite(ctx), compute.ErrCreatorDenied)
		return &nbd.Export{Backend: &volumeExport{a: a}, ReadOnly: ro}, nil
	}
	return &nbd.Export{Backend: &snapshotExport{a: a}, ReadOnly: true}, nil
}

// snapshotExport is a read-only export of a snapshot; every request checks
// the grant.
type snapshotExport struct{ a *compute.DataAccess }

func (e *snapshotExport) Size() int64 { return e.a.Size() }

func (e *snapshotExport) ReadAt(p []byte, off int64) (int, error) {
	return e.a.ReadAt(context.Background(), p, off)
}

func (e *snapshotExport) BlockStatus(off, n int64) ([]nbd.Extent, error) {
	return blockStatus(e.a, off, n)
}

// volumeExport exports a disk's volume; writes need a write grant, and
// every request checks the grant.
type volumeExport struct{ a *compute.DataAccess }

func (e *volumeExport) Size() int64 { return e.a.Size() }

func (e *volumeExport) ReadAt(p []byte, off int64) (int, error) {
	return e.a.ReadAt(context.Background(), p, off)
}

func (e *volumeExport) ReadSparse(p []byte, off int64, hole func(off, n int64)) (int, error) {
	if err := e.a.Check(context.Background()); err != nil {
		return 0, err
	}
	return e.a.Volume.ReadSparseAt(context.Background(), p, off, hole)
}

func (e *volumeExport) TryReadSparse(p []byte, off int64, hole func(off, n int64)) (int, bool, error) {
	if err := e.a.Check(context.Background()); err != nil {
		return 0, true, err
	}
	return e.a.Volume.TryReadSparseAt(p, off, hole)
}

func (e *volumeExport) WriteAt(p []byte, off int64) (int, error) {
	if err := e.a.CheckWrite(context.Background()); err != nil {
		return 0, err
	}
	return e.a.Volume.WriteAtContext(context.Background(), p, off)
}

func (e *volumeExport) TryReadAt(p []byte, off int64) (int, bool, error) {
	if err := e.a.Check(context.Background()); err != nil {
		return 0, true, err
	}
	return e.a.Volume.TryReadAt(p, off)
}

func (e *volumeExport) TryWriteAt(p []byte, off int64) (bool, error) {
	if err := e.a.CheckWrite(context.Background()); err != nil {
		return true, err
	}
	return e.a.Volume.TryWriteAt(p, off)
}

func (e *volumeExport) Flush() error {
	if err := e.a.Check(context.Background()); err != nil {
		return err
	}
	return e.a.Volume.Flush(context.Background())
}

func (e *volumeExport) Trim(off, n int64) error {
	if err := e.a.CheckWrite(context.Background()); err != nil {
		return err
	}
	return e.a.Volume.Trim(context.Background(), off, n)
}

func (e *volumeExport) WriteZeroes(off, n int64) error {
	if err := e.a.CheckWrite(context.Background()); err != nil {
		return err
	}
	return e.a.Volume.WriteZeroes(context.Background(), off, n)
}

func (e *volumeExport) BlockStatus(off, n int64) ([]nbd.Extent, error) {
	return blockStatus(e.a, off, n)
}

func blockStatus(a *compute.DataAccess, off, n int64) ([]nbd.Extent, error) {
	exts, err := a.Extents(context.Background(), off, n)
	if err != nil {
		return nil, err
	}
	out := make([]nbd.Extent, 0, len(exts))
	for _, x := range exts {
		out = append(out, nbd.Extent{Offset: x.Offset, Length: x.Length, Hole: x.Hole, Zero: x.Hole})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("block status at %d: %w", off, blockdev.ErrOutOfRange)
	}
	return out, nil
}

// startNBD opens the NBD listener on cfg.NBDListen and serves it until ctx
// ends. It records the address for the NBD URLs of access grants.
func (s *Server) startNBD(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.NBDListen)
	if err != nil {
		return fmt.Errorf("listen %s (NBD): %w", s.cfg.NBDListen, err)
	}
	// Under --tls, NBD requires TLS (FORCEDTLS): export names are grant
	// tokens and must not cross the network in clear, nor must the data.
	s.nbd = &nbd.Server{Resolver: s.resolveExport, TLSConfig: s.tlsConfig, Logger: s.log, Clock: s.cfg.Clock,
		RequireTLS: s.tlsConfig != nil && !s.cfg.InsecureNBD, Metrics: s.nbdMetrics}
	s.nbdAddr.Store(ln.Addr().String())
	s.nbdDone = make(chan struct{})
	go func() {
		defer close(s.nbdDone)
		if err := s.nbd.Serve(ctx, ln); err != nil && !errors.Is(err, nbd.ErrServerClosed) && !errors.Is(err, context.Canceled) {
			s.log.Error("NBD server stopped", "err", err)
		}
	}()
	return nil
}

// stopNBD closes the NBD server and waits for it.
func (s *Server) stopNBD(ctx context.Context) {
	if s.nbd == nil {
		return
	}
	if err := s.nbd.Shutdown(ctx); err != nil {
		s.nbd.Close()
	}
	<-s.nbdDone
}

// NBDAddr is the address the NBD server listens on ("" before Serve).
func (s *Server) NBDAddr() string {
	a, _ := s.nbdAddr.Load().(string)
	return a
}

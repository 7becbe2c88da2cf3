package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"coffer/internal/authorization"
	"coffer/internal/blockdev"
	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// liveGrant is the in-memory state of a grant in use.
type liveGrant struct {
	grantPointer
	// creator made the grant; standalone grants (OutlivesCreator) are not
	// checked against its rights.
	creator    string
	standalone bool
	revoked    atomic.Bool
	rights     atomic.Pointer[rightsCheck]

	mu   sync.Mutex
	snap *blockdev.SnapshotReader // opened once per grant
}

// rightsCheck is a kept decision on whether a grant's creator still holds
// the rights the grant needs.
type rightsCheck struct {
	index uint64 // store index of the role assignments it was made on
	read  error  // nil while the creator holds beginGetAccess
	write error  // nil while it also holds the right to write
}

// creatorRights decides whether the creator of lg still holds the rights
// that creating lg took. The decision is kept until a role assignment
// changes, so that a request normally costs no store read.
func (s *Service) creatorRights(ctx context.Context, lg *liveGrant) (*rightsCheck, error) {
	if lg.standalone || lg.creator == "" || s.Authz == nil {
		return &rightsCheck{}, nil
	}
	keeper, keeps := s.Authz.(decisionKeeper)
	if c := lg.rights.Load(); c != nil && keeps && keeper.Unchanged(c.index) {
		return c, nil
	}
	p := identity.Principal{ID: lg.creator}
	c := &rightsCheck{index: ^uint64(0)}
	for i, act := range grantActions(lg.Type, lg.Access) {
		var ok bool
		var idx uint64
		var err error
		if keeps {
			ok, idx, err = keeper.AllowedAt(ctx, p, act, lg.ResourceID)
		} else {
			var d authorization.Decision
			d, err = s.Authz.Decide(ctx, p, act, lg.ResourceID)
			ok = d.Allowed
		}
		if err != nil {
			return nil, fmt.Errorf("check the creator of access grant %s: %w", lg.ID, err)
		}
		c.index = min(c.index, idx)
		if !ok {
			e := fmt.Errorf("access grant %s: its creator %s may no longer perform %s on %s: %w: %w: %w",
				lg.ID, lg.creator, act, lg.ResourceID, ErrCreatorDenied, ErrAccessDenied, fs.ErrPermission)
			if i == 0 {
				c.read = e
			}
			c.write = e
			break
		}
	}
	lg.rights.Store(c)
	return c, nil
}

// DataAccess is an open use of a grant: the device behind it and the right
// to use it, checked again by Check on every request.
type DataAccess struct {
	s *Service
	g *liveGrant
	// Type is TypeDisks or TypeSnapshots; UniqueID the resource's uniqueId.
	Type     string
	UniqueID string
	// ResourceID is the disk's or snapshot's ARM ID.
	ResourceID string
	Access     Access
	Expires    time.Time
	// Volume is the disk's volume (nil for a snapshot).
	Volume *blockdev.Volume
	// Snapshot is the snapshot's reader (nil for a disk).
	Snapshot *blockdev.SnapshotReader
}

// Writable reports whether the grant allows writes.
func (a *DataAccess) Writable() bool { return a.Access == AccessWrite && a.Volume != nil }

// Size is the device size in bytes.
func (a *DataAccess) Size() int64 {
	if a.Volume != nil {
		return a.Volume.Size()
	}
	return a.Snapshot.Size()
}

// Check returns an error wrapping ErrAccessDenied (and fs.ErrPermission, so
// that the NBD server answers EPERM) once the grant has expired or been
// revoked, or its creator no longer holds beginGetAccess on the resource
// (ErrCreatorDenied too).
func (a *DataAccess) Check(ctx context.Context) error {
	return a.check(ctx, false)
}

// CheckWrite is Check plus the write permission: a Write grant whose
// creator still may write the disk.
func (a *DataAccess) CheckWrite(ctx context.Context) error {
	return a.check(ctx, true)
}

func (a *DataAccess) check(ctx context.Context, write bool) error {
	if a.g.revoked.Load() {
		return fmt.Errorf("access grant %s was revoked: %w: %w", a.g.ID, ErrAccessDenied, fs.ErrPermission)
	}
	if !a.s.now().Before(a.Expires) {
		return fmt.Errorf("access grant %s expired at %s: %w: %w", a.g.ID, a.Expires.Format(time.RFC3339), ErrAccessDenied, fs.ErrPermission)
	}
	if write && !a.Writable() {
		return fmt.Errorf("access grant %s: %w: %w", a.g.ID, ErrReadOnly, fs.ErrPermission)
	}
	c, err := a.s.creatorRights(ctx, a.g)
	if err != nil {
		return err
	}
	if write {
		return c.write
	}
	return c.read
}

// ReadAt reads from the device after checking the grant.
func (a *DataAccess) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := a.Check(ctx); err != nil {
		return 0, err
	}
	if a.Volume != nil {
		return a.Volume.ReadAtContext(ctx, p, off)
	}
	return a.Snapshot.ReadAtContext(ctx, p, off)
}

// Extents reports data and holes of [off, off+n).
func (a *DataAccess) Extents(ctx context.Context, off, n int64) ([]blockdev.Extent, error) {
	if err := a.Check(ctx); err != nil {
		return nil, err
	}
	if a.Volume != nil {
		return a.Volume.Extents(ctx, off, n)
	}
	return a.Snapshot.Extents(ctx, off, n)
}

// Diff returns the 512-byte pages of this snapshot that differ from the
// snapshot behind prev, merged into ranges: data (Hole false) or ranges that
// now read as zeros (Hole true). Both must be snapshot grants. The block
// engine's diff finds the changed blocks by comparing manifests; within
// them, pages are compared byte for byte, so a 512-byte write is reported as
// one page, as Azure reports it.
func (a *DataAccess) Diff(ctx context.Context, prev *DataAccess) ([]blockdev.Extent, error) {
	if err := a.Check(ctx); err != nil {
		return nil, err
	}
	if err := prev.Check(ctx); err != nil {
		return nil, err
	}
	if a.Snapshot == nil || prev.Snapshot == nil {
		return nil, fmt.Errorf("diff: %w", ErrNotSnapshot)
	}
	changed, err := a.s.Engine.Diff(ctx, prev.UniqueID, a.UniqueID)
	if err != nil {
		return nil, fmt.Errorf("diff %s: %w", a.ResourceID, err)
	}
	size, psize := a.Size(), prev.Size()
	const page, chunk = 512, 1 << 20
	bufA, bufB := make([]byte, chunk), make([]byte, chunk)
	var out []blockdev.Extent
	add := func(off int64, hole bool) {
		if k := len(out); k > 0 && out[k-1].Hole == hole && out[k-1].Offset+out[k-1].Length == off {
			out[k-1].Length += page
			return
		}
		out = append(out, blockdev.Extent{Offset: off, Length: page, Hole: hole})
	}
	for _, c := range changed {
		end := min(c.Offset+c.Length, size)
		for pos := c.Offset; pos < end; pos += chunk {
			n := min(int64(chunk), end-pos)
			ba, bb := bufA[:n], bufB[:n]
			if _, err := a.Snapshot.ReadAtContext(ctx, ba, pos); err != nil && !errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("diff %s: %w", a.ResourceID, err)
			}
			clear(bb)
			if pos < psize {
				m := min(n, psize-pos)
				if _, err := prev.Snapshot.ReadAtContext(ctx, bb[:m], pos); err != nil && !errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("diff %s: %w", prev.ResourceID, err)
				}
			}
			for o := int64(0); o < n; o += page {
				pa, pb := ba[o:o+page], bb[o:o+page]
				if !bytes.Equal(pa, pb) {
					add(pos+o, isZero(pa))
				}
			}
		}
	}
	return out, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ErrNotSnapshot is wrapped when a snapshot was expected.
var ErrNotSnapshot = errors.New("not a snapshot")

// OpenAccess resolves a grant token (from a SAS URL or an NBD export name)
// to the device it grants. Malformed or unknown tokens wrap
// ErrUnknownGrant; expired or revoked ones ErrAccessDenied.
func (s *Service) OpenAccess(ctx context.Context, token string) (*DataAccess, error) {
	id, exp, err := s.parseToken(token)
	if err != nil {
		return nil, err
	}
	if !s.now().Before(exp) {
		return nil, fmt.Errorf("access grant %s expired at %s: %w", id, exp.Format(time.RFC3339), ErrAccessDenied)
	}
	lg, err := s.lookupGrant(ctx, id)
	if err != nil {
		return nil, err
	}
	a := &DataAccess{s: s, g: lg, Type: lg.Type, UniqueID: lg.UniqueID, ResourceID: lg.ResourceID, Access: lg.Access, Expires: lg.Expires}
	if err := a.Check(ctx); err != nil {
		return nil, err
	}
	if lg.Type == TypeDisks {
		if a.Volume, err = s.Engine.OpenVolume(ctx, lg.UniqueID); err != nil {
			return nil, fmt.Errorf("open disk %s: %w", lg.ResourceID, err)
		}
		return a, nil
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if lg.snap == nil {
		if lg.snap, err = s.Engine.OpenSnapshot(ctx, lg.UniqueID); err != nil {
			return nil, fmt.Errorf("open snapshot %s: %w", lg.ResourceID, err)
		}
	}
	a.Snapshot = lg.snap
	return a, nil
}

// lookupGrant finds a live grant in the cache or the store.
func (s *Service) lookupGrant(ctx context.Context, id string) (*liveGrant, error) {
	s.mu.Lock()
	lg := s.grants[id]
	s.mu.Unlock()
	if lg != nil {
		return lg, nil
	}
	var ptr grantPointer
	var found Grant
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := getJSON(ctx, tx, kindGrant, grantKey(id), &ptr); err != nil {
			return err
		}
		rid, err := resource.Parse(ptr.ResourceID)
		if err != nil {
			return fmt.Errorf("grant %s: %w", id, err)
		}
		var grants []Grant
		if ptr.Type == TypeDisks {
			d, err := s.getDisk(ctx, tx, rid)
			if err != nil {
				return err
			}
			grants = d.Grants
		} else {
			sn, err := s.getSnapshot(ctx, tx, rid)
			if err != nil {
				return err
			}
			grants = sn.Grants
		}
		for _, g := range grants {
			if g.ID == id {
				found = g
				return nil
			}
		}
		return store.ErrNotFound
	})
	if errors.Is(err, store.ErrNotFound) || resource.IsNotFound(err) {
		return nil, fmt.Errorf("access grant %s was revoked: %w", id, ErrAccessDenied)
	}
	if err != nil {
		return nil, fmt.Errorf("look up access grant %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grants == nil {
		s.grants = map[string]*liveGrant{}
	}
	if cur := s.grants[id]; cur != nil {
		return cur, nil
	}
	if s.revoked[id] {
		return nil, fmt.Errorf("access grant %s was revoked: %w", id, ErrAccessDenied)
	}
	lg = &liveGrant{grantPointer: ptr, creator: found.CreatedBy, standalone: found.OutlivesCreator}
	s.grants[id] = lg
	return lg, nil
}

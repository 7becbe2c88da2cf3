package compute

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"coffer/internal/blockdev"
	"coffer/internal/identity"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// Token layout (before base64url): version 1 byte, grant ID 16 bytes,
// expiry (Unix seconds) 8 bytes, access 1 byte, resource type 1 byte, then
// HMAC-SHA256 of those 27 bytes under Service.GrantKey.
const (
	tokenVersion = 1
	payloadLen   = 27
	tokenLen     = payloadLen + sha256.Size
)

// grantPointer is the store record that finds a grant's resource from its
// ID (key /compute/grants/<id>).
type grantPointer struct {
	ID         string    `json:"id"`
	ResourceID string    `json:"resourceId"`
	Type       string    `json:"type"`
	UniqueID   string    `json:"uniqueId"`
	Access     Access    `json:"access"`
	Expires    time.Time `json:"expires"`
}

func grantKey(id string) string { return "/compute/grants/" + strings.ToLower(id) }

// liveGrant is the in-memory state of a grant in use.
type liveGrant struct {
	grantPointer
	revoked atomic.Bool

	mu   sync.Mutex
	snap *blockdev.SnapshotReader // opened once per grant
}

// GrantResult is what GrantAccess returns.
type GrantResult struct {
	Grant    Grant
	Token    string
	Type     string // TypeDisks or TypeSnapshots
	UniqueID string
	// Location is the resource's location.
	Location string
	// ResourceID is the disk's or snapshot's ARM ID.
	ResourceID string
}

// GrantRef names a grant with everything its token is derived from, and
// nothing secret: a beginGetAccess result stores it instead of the access
// URLs, and Token derives the token again when the result is read.
type GrantRef struct {
	ID         string    `json:"grantId"`
	ResourceID string    `json:"resourceId"`
	Type       string    `json:"type"`
	UniqueID   string    `json:"uniqueId"`
	Access     Access    `json:"access"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
}

// Ref returns the reference of the grant.
func (r GrantResult) Ref() GrantRef {
	return GrantRef{ID: r.Grant.ID, ResourceID: r.ResourceID, Type: r.Type, UniqueID: r.UniqueID,
		Access: r.Grant.Access, Created: r.Grant.Created, Expires: r.Grant.Expires}
}

// Token derives the secret token of the grant ref names. It does not check
// that the grant is still live: the token of an ended grant opens nothing.
func (s *Service) Token(ref GrantRef) (string, error) {
	return s.newToken(Grant{ID: ref.ID, Access: ref.Access, Expires: ref.Expires}, ref.Type)
}

// ParseToken checks a token's signature and returns the ID and expiry of
// the grant it names (wrapping ErrUnknownGrant when it is not a token this
// server signed).
func (s *Service) ParseToken(tok string) (id string, expires time.Time, err error) {
	return s.parseToken(tok)
}

// AuthorizeGrant checks that p holds every action creating the grant ref
// names takes, so that p may be handed its token.
func (s *Service) AuthorizeGrant(ctx context.Context, p identity.Principal, ref GrantRef) error {
	for _, act := range grantActions(ref.Type, ref.Access) {
		if err := s.authorize(ctx, p, act, ref.ResourceID); err != nil {
			return err
		}
	}
	return nil
}

// ParseAccess parses the access of a grant (case-insensitive Read or Write).
func ParseAccess(s string) (Access, error) {
	switch {
	case strings.EqualFold(s, string(AccessRead)):
		return AccessRead, nil
	case strings.EqualFold(s, string(AccessWrite)):
		return AccessWrite, nil
	case s == "":
		return "", invalidParameter("access", "Required parameter 'access' is missing (null).")
	}
	return "", invalidParameter("access", "The value '%s' of parameter 'access' is not valid. Allowed values are 'Read' and 'Write'.", s)
}

func (s *Service) sign(payload []byte) []byte {
	m := hmac.New(sha256.New, s.GrantKey)
	m.Write(payload)
	return m.Sum(nil)
}

func (s *Service) newToken(g Grant, typ string) (string, error) {
	raw, err := hex.DecodeString(strings.ReplaceAll(g.ID, "-", ""))
	if err != nil || len(raw) != 16 {
		return "", fmt.Errorf("grant ID %q is not a GUID", g.ID)
	}
	b := make([]byte, 0, tokenLen)
	b = append(b, tokenVersion)
	b = append(b, raw...)
	b = binary.BigEndian.AppendUint64(b, uint64(g.Expires.Unix()))
	acc := byte('r')
	if g.Access == AccessWrite {
		acc = 'w'
	}
	t := byte('d')
	if typ == TypeSnapshots {
		t = 's'
	}
	b = append(b, acc, t)
	b = append(b, s.sign(b)...)
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// parseToken checks a token's signature and returns the grant ID and expiry.
func (s *Service) parseToken(tok string) (string, time.Time, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != tokenLen || b[0] != tokenVersion {
		return "", time.Time{}, fmt.Errorf("access token: %w", ErrUnknownGrant)
	}
	if !hmac.Equal(s.sign(b[:payloadLen]), b[payloadLen:]) {
		return "", time.Time{}, fmt.Errorf("access token: bad signature: %w", ErrUnknownGrant)
	}
	h := hex.EncodeToString(b[1:17])
	id := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	exp := time.Unix(int64(binary.BigEndian.Uint64(b[17:25])), 0).UTC()
	return id, exp, nil
}

// grantActions are the RBAC actions a grant of access to a resource of
// type typ needs, at the resource: beginGetAccess, and for Write the right
// to write the disk.
func grantActions(typ string, access Access) []string {
	acts := []string{action(typ, actionKindGrant)}
	if access == AccessWrite {
		acts = append(acts, action(typ, "write"))
	}
	return acts
}

// GrantAccess is beginGetAccess: it grants Read or Write access to a disk
// or snapshot for duration and returns the grant's secret token (used in
// the SAS URL and as the NBD export name). It checks
// Microsoft.Compute/{disks|snapshots}/beginGetAccess/action and, for
// Write, Microsoft.Compute/disks/write.
//
// Write is allowed on a disk that awaits an upload (ReadyToUpload,
// ActiveUpload) and, as a Coffer extension, on any provisioned disk; never
// on a snapshot. A disk awaiting an upload gets only Write grants.
func (s *Service) GrantAccess(ctx context.Context, p identity.Principal, id resource.ID, access Access, duration time.Duration) (GrantResult, error) {
	typ := id.Types[len(id.Types)-1]
	if err := s.authorize(ctx, p, action(typ, actionKindGrant), id.String()); err != nil {
		return GrantResult{}, err
	}
	if _, err := ParseAccess(string(access)); err != nil {
		return GrantResult{}, err
	}
	if duration <= 0 || duration > MaxGrantDuration {
		return GrantResult{}, invalidParameter("durationInSeconds", "The value %d of parameter 'durationInSeconds' is out of range. The value must be between 1 and %d, inclusive.",
			int64(duration/time.Second), int64(MaxGrantDuration/time.Second))
	}
	if typ == TypeSnapshots && access == AccessWrite {
		return GrantResult{}, invalidParameter("access", "Write access cannot be granted on a snapshot; snapshots are read-only.")
	}
	// A grant confers at most what its creator may do: writing through
	// it takes the right to write the disk (Disk Backup Reader and Disk
	// Snapshot Contributor hold beginGetAccess, not disks/write).
	for _, act := range grantActions(typ, access)[1:] {
		if err := s.authorize(ctx, p, act, id.String()); err != nil {
			return GrantResult{}, err
		}
	}
	now := s.now()
	g := Grant{ID: identity.NewGUID(), Access: access, Created: now, Expires: now.Add(duration).Truncate(time.Second), CreatedBy: p.ID}
	var uid, loc string
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := s.checkGroupExists(ctx, tx, id); err != nil {
			return err
		}
		var expired []Grant
		var err error
		if typ == TypeDisks {
			_, err = updateRecord(ctx, tx, KindDisk, id, func(d *Disk) error {
				if d.ProvisioningState != StateSucceeded {
					return notAllowed("Disk '%s' is in provisioning state '%s'; access can be granted once it has succeeded.", d.Name, d.ProvisioningState)
				}
				if d.Uploading && access == AccessRead {
					return notAllowed("Disk '%s' is in state '%s'. Only Write access can be granted until the upload ends (endGetAccess).", d.Name, d.State(now))
				}
				d.Grants, expired = pruneGrants(d.Grants, now, d.Uploading)
				d.Grants = append(d.Grants, g)
				uid, loc = d.UniqueID, d.Location
				return nil
			})
		} else {
			_, err = updateRecord(ctx, tx, KindSnapshot, id, func(sn *Snapshot) error {
				if sn.ProvisioningState != StateSucceeded {
					return notAllowed("Snapshot '%s' is in provisioning state '%s'; access can be granted once it has succeeded.", sn.Name, sn.ProvisioningState)
				}
				sn.Grants, expired = pruneGrants(sn.Grants, now, false)
				sn.Grants = append(sn.Grants, g)
				uid, loc = sn.UniqueID, sn.Location
				return nil
			})
		}
		if err != nil {
			return err
		}
		if err := deleteGrantPointers(ctx, tx, expired); err != nil {
			return err
		}
		_, err = putJSON(ctx, tx, kindGrant, grantKey(g.ID),
			grantPointer{ID: g.ID, ResourceID: id.String(), Type: typ, UniqueID: uid, Access: access, Expires: g.Expires})
		return err
	})
	if err != nil {
		return GrantResult{}, err
	}
	tok, err := s.newToken(g, typ)
	if err != nil {
		return GrantResult{}, err
	}
	return GrantResult{Grant: g, Token: tok, Type: typ, UniqueID: uid, Location: loc, ResourceID: id.String()}, nil
}

// pruneGrants drops expired grants; an upload disk keeps its expired write
// grants so that endGetAccess still ends the upload.
func pruneGrants(gs []Grant, now time.Time, keepWrites bool) (keep, expired []Grant) {
	for _, g := range gs {
		if now.Before(g.Expires) || (keepWrites && g.Access == AccessWrite) {
			keep = append(keep, g)
		} else {
			expired = append(expired, g)
		}
	}
	return keep, expired
}

func deleteGrantPointers(ctx context.Context, tx store.Tx, gs []Grant) error {
	for _, g := range gs {
		if err := tx.Delete(ctx, kindGrant, grantKey(g.ID)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("delete grant %s: %w", g.ID, err)
		}
	}
	return nil
}

// forgetGrants marks grants revoked in the cache, so that open connections
// see it on their next request.
func (s *Service) forgetGrants(gs []Grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked == nil {
		s.revoked = map[string]bool{}
	}
	for _, g := range gs {
		s.revoked[g.ID] = true
		if lg := s.grants[g.ID]; lg != nil {
			lg.revoked.Store(true)
			delete(s.grants, g.ID)
		}
	}
}

// RevokeAccess is endGetAccess: it revokes every grant of the disk or
// snapshot. A disk whose upload was in progress becomes Unattached. It
// checks Microsoft.Compute/{disks|snapshots}/endGetAccess/action.
func (s *Service) RevokeAccess(ctx context.Context, p identity.Principal, id resource.ID) error {
	typ := id.Types[len(id.Types)-1]
	if err := s.authorize(ctx, p, action(typ, actionKindRevoke), id.String()); err != nil {
		return err
	}
	var revoked []Grant
	var volume string
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := s.checkGroupExists(ctx, tx, id); err != nil {
			return err
		}
		var err error
		if typ == TypeDisks {
			_, err = updateRecord(ctx, tx, KindDisk, id, func(d *Disk) error {
				revoked = d.Grants
				for _, g := range d.Grants {
					if g.Access == AccessWrite {
						d.Uploading = false
					}
				}
				d.Grants = nil
				volume = d.UniqueID
				return nil
			})
		} else {
			_, err = updateRecord(ctx, tx, KindSnapshot, id, func(sn *Snapshot) error {
				revoked, sn.Grants = sn.Grants, nil
				return nil
			})
		}
		if err != nil {
			return err
		}
		return deleteGrantPointers(ctx, tx, revoked)
	})
	if err != nil {
		return err
	}
	s.forgetGrants(revoked)
	if volume != "" && len(revoked) > 0 {
		vol, err := s.Engine.OpenVolume(ctx, volume)
		if err == nil {
			err = vol.Flush(ctx)
		}
		if err != nil {
			return fmt.Errorf("end access to %s: %w", id, err)
		}
	}
	return nil
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
// revoked.
func (a *DataAccess) Check() error {
	if a.g.revoked.Load() {
		return fmt.Errorf("access grant %s was revoked: %w: %w", a.g.ID, ErrAccessDenied, fs.ErrPermission)
	}
	if !a.s.now().Before(a.Expires) {
		return fmt.Errorf("access grant %s expired at %s: %w: %w", a.g.ID, a.Expires.Format(time.RFC3339), ErrAccessDenied, fs.ErrPermission)
	}
	return nil
}

// CheckWrite is Check plus the write permission.
func (a *DataAccess) CheckWrite() error {
	if err := a.Check(); err != nil {
		return err
	}
	if !a.Writable() {
		return fmt.Errorf("access grant %s: %w: %w", a.g.ID, ErrReadOnly, fs.ErrPermission)
	}
	return nil
}

// ReadAt reads from the device after checking the grant.
func (a *DataAccess) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if err := a.Check(); err != nil {
		return 0, err
	}
	if a.Volume != nil {
		return a.Volume.ReadAtContext(ctx, p, off)
	}
	return a.Snapshot.ReadAtContext(ctx, p, off)
}

// Extents reports data and holes of [off, off+n).
func (a *DataAccess) Extents(ctx context.Context, off, n int64) ([]blockdev.Extent, error) {
	if err := a.Check(); err != nil {
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
	if err := a.Check(); err != nil {
		return nil, err
	}
	if err := prev.Check(); err != nil {
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
	if err := a.Check(); err != nil {
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
				return nil
			}
		}
		return store.ErrNotFound
	})
	if errors.Is(err, store.ErrNotFound) || resource.IsCode(err, "ResourceNotFound") {
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
	lg = &liveGrant{grantPointer: ptr}
	s.grants[id] = lg
	return lg, nil
}

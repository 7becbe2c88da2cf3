package compute

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"coffer/internal/authorization"
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
	// CreatedBy and OutlivesCreator are the grant's (empty in pointers
	// written by earlier releases; the resource's record has them).
	CreatedBy       string `json:"createdBy,omitempty"`
	OutlivesCreator bool   `json:"outlivesCreator,omitempty"`
}

func grantKey(id string) string { return "/compute/grants/" + strings.ToLower(id) }

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

// AuthorizeGrant checks, through the decision point, that p holds every
// action creating the grant ref names takes, so that p may be handed its
// token.
func (s *Service) AuthorizeGrant(ctx context.Context, p identity.Principal, ref GrantRef) error {
	for _, act := range grantActions(ref.Type, ref.Access) {
		if err := s.require(ctx, p, authorization.Need{Action: act, Scope: ref.ResourceID}); err != nil {
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

// GrantInput is the body of a beginGetAccess.
type GrantInput struct {
	Access   Access
	Duration time.Duration
	// OutlivesCreator (a Coffer extension) makes a grant that stands alone:
	// by default a grant is usable only while its creator holds the rights
	// creating it took, and ends when its creator is deleted.
	OutlivesCreator bool
}

// GrantAccess is beginGetAccess: it grants Read or Write access to a disk
// or snapshot for a while and returns the grant's secret token (used in the
// SAS URL and as the NBD export name). The caller has authorized
// Microsoft.Compute/{disks|snapshots}/beginGetAccess/action for p; for
// Write it checks Microsoft.Compute/disks/write.
//
// Write is allowed on a disk that awaits an upload (ReadyToUpload,
// ActiveUpload) and, as a Coffer extension, on any provisioned disk; never
// on a snapshot. A disk awaiting an upload gets only Write grants.
func (s *Service) GrantAccess(ctx context.Context, p identity.Principal, id resource.ID, in GrantInput) (GrantResult, error) {
	typ := id.Types[len(id.Types)-1]
	access, duration := in.Access, in.Duration
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
		if err := s.require(ctx, p, authorization.Need{Action: act, Scope: id.String()}); err != nil {
			return GrantResult{}, err
		}
	}
	now := s.now()
	g := Grant{ID: identity.NewGUID(), Access: access, Created: now, Expires: now.Add(duration).Truncate(time.Second), CreatedBy: p.ID,
		OutlivesCreator: in.OutlivesCreator}
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
		_, err = putJSON(ctx, tx, kindGrant, grantKey(g.ID), grantPointer{ID: g.ID, ResourceID: id.String(), Type: typ, UniqueID: uid,
			Access: access, Expires: g.Expires, CreatedBy: g.CreatedBy, OutlivesCreator: g.OutlivesCreator})
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
// snapshot. A disk whose upload was in progress becomes Unattached. The
// caller has authorized Microsoft.Compute/{disks|snapshots}/endGetAccess/action.
func (s *Service) RevokeAccess(ctx context.Context, id resource.ID) error {
	return s.endGrants(ctx, id, func(gs []Grant) ([]Grant, error) { return gs, nil })
}

// RevokeGrant ends one grant of the disk or snapshot (a Coffer extension of
// endGetAccess), leaving the others alone. Ending a Write grant of a disk
// awaiting an upload ends the upload unless another unexpired Write grant
// remains. The caller has authorized what endGetAccess needs; a grant the
// resource does not hold is a 404 GrantNotFound.
func (s *Service) RevokeGrant(ctx context.Context, id resource.ID, grantID string) error {
	if !identity.IsGUID(grantID) {
		return invalidParameter("grantId", "The value '%s' of parameter 'grantId' is not a valid access grant ID (a GUID).", grantID)
	}
	return s.endGrants(ctx, id, func(gs []Grant) ([]Grant, error) {
		for _, g := range gs {
			if strings.EqualFold(g.ID, grantID) {
				return []Grant{g}, nil
			}
		}
		return nil, resource.Errorf(resource.KindNotFound, "GrantNotFound",
			"The access grant '%s' was not found on '%s': it has ended or belongs to another resource.", grantID, id)
	})
}

// endGrants ends the grants pick chooses among those of the resource id,
// and flushes a disk's volume so that what was written through them is
// durable.
func (s *Service) endGrants(ctx context.Context, id resource.ID, pick func([]Grant) ([]Grant, error)) error {
	var ended []Grant
	var volume string
	err := s.Store.Update(ctx, func(tx store.Tx) error {
		if err := s.checkGroupExists(ctx, tx, id); err != nil {
			return err
		}
		var err error
		ended, volume, err = s.endGrantsTx(ctx, tx, id, pick)
		return err
	})
	if err != nil {
		return err
	}
	s.forgetGrants(ended)
	if volume != "" && len(ended) > 0 {
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

// endGrantsTx removes from the record of id, in tx, the grants pick
// chooses, and their pointers. When a disk awaiting an upload is left with
// no unexpired Write grant after a Write grant ended, the upload ends (with
// the expired Write grants it kept for that). It returns the grants ended
// and, for a disk, its volume.
func (s *Service) endGrantsTx(ctx context.Context, tx store.Tx, id resource.ID, pick func([]Grant) ([]Grant, error)) (ended []Grant, volume string, err error) {
	now := s.now()
	remove := func(gs []Grant) ([]Grant, error) {
		var err error
		if ended, err = pick(gs); err != nil {
			return gs, err
		}
		var keep []Grant
		for _, g := range gs {
			if !slices.ContainsFunc(ended, func(e Grant) bool { return e.ID == g.ID }) {
				keep = append(keep, g)
			}
		}
		return keep, nil
	}
	if id.Types[len(id.Types)-1] == TypeDisks {
		_, err = updateRecord(ctx, tx, KindDisk, id, func(d *Disk) error {
			var err error
			if d.Grants, err = remove(d.Grants); err != nil {
				return err
			}
			volume = d.UniqueID
			wrote := slices.ContainsFunc(ended, func(g Grant) bool { return g.Access == AccessWrite })
			writing := slices.ContainsFunc(d.Grants, func(g Grant) bool { return g.Access == AccessWrite && now.Before(g.Expires) })
			if d.Uploading && wrote && !writing {
				d.Uploading = false
				var expired []Grant
				d.Grants, expired = pruneGrants(d.Grants, now, false)
				ended = append(ended, expired...)
			}
			return nil
		})
	} else {
		_, err = updateRecord(ctx, tx, KindSnapshot, id, func(sn *Snapshot) error {
			var err error
			sn.Grants, err = remove(sn.Grants)
			return err
		})
	}
	if err != nil {
		return nil, "", err
	}
	return ended, volume, deleteGrantPointers(ctx, tx, ended)
}

// EndGrantsOf ends, in tx, the access grants principalID created, except
// those made to outlive it; the transaction that deletes the principal
// calls it (authorization.Service.PrincipalDeleted). Connections already
// open on those grants are refused on their next request, as the grants'
// creator then holds no rights (see DataAccess.Check).
func (s *Service) EndGrantsOf(ctx context.Context, tx store.Tx, principalID string) error {
	objs, err := tx.List(ctx, store.Query{Kind: kindGrant})
	if err != nil {
		return fmt.Errorf("end the access grants of %s: %w", principalID, err)
	}
	// The resources holding grants the principal may have created.
	resources := map[string]bool{}
	for _, o := range objs {
		var ptr grantPointer
		if err := json.Unmarshal(o.Data, &ptr); err != nil {
			return fmt.Errorf("decode access grant %s: %w", o.Key, err)
		}
		if ptr.OutlivesCreator || (ptr.CreatedBy != "" && !strings.EqualFold(ptr.CreatedBy, principalID)) {
			continue
		}
		resources[ptr.ResourceID] = true
	}
	for rid := range resources {
		id, err := resource.Parse(rid)
		if err != nil {
			return fmt.Errorf("end the access grants of %s: %w", principalID, err)
		}
		_, _, err = s.endGrantsTx(ctx, tx, id, func(gs []Grant) ([]Grant, error) {
			var theirs []Grant
			for _, g := range gs {
				if strings.EqualFold(g.CreatedBy, principalID) && !g.OutlivesCreator {
					theirs = append(theirs, g)
				}
			}
			return theirs, nil
		})
		if resource.IsNotFound(err) {
			continue // a dangling pointer; lookupGrant refuses it
		}
		if err != nil {
			return fmt.Errorf("end the access grants of %s: %w", principalID, err)
		}
	}
	return nil
}

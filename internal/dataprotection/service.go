package dataprotection

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"coffer/internal/authorization"
	"coffer/internal/capacity"
	"coffer/internal/clock"
	"coffer/internal/identity"
	"coffer/internal/job"
	"coffer/internal/rbac"
	"coffer/internal/resource"
	"coffer/internal/store"
	"coffer/internal/tenant"
)

// Authorizer is the decision point and the role assignments
// (authorization.Service implements it): the vault identity's actions are
// decided by it, validation reads which roles the identity holds, and a
// vault's deletion removes its identity's assignments.
type Authorizer interface {
	Decide(ctx context.Context, p identity.Principal, action, scope string) (authorization.Decision, error)
	Policy(ctx context.Context) (*rbac.Policy, error)
	DeletePrincipal(ctx context.Context, tx store.Tx, principalID string) error
}

// Identities creates and deletes vaults' managed identities
// (identity.Service implements it).
type Identities interface {
	CreateManagedIdentityTx(ctx context.Context, tx store.Tx, resourceID, displayName string) (identity.Principal, error)
	DeleteTx(ctx context.Context, tx store.Tx, id string) error
}

// Groups knows resource groups and regions (tenant.Service implements it).
type Groups interface {
	GetGroup(ctx context.Context, tx store.Tx, id resource.ID) (tenant.Group, error)
	CheckLocation(loc, code, what string) (string, error)
}

// Service is Microsoft.DataProtection for managed disks.
type Service struct {
	Store      store.Store
	Clock      clock.Clock
	Queue      *job.Queue
	Authz      Authorizer
	Identities Identities
	Groups     Groups
	Disks      Disks
	Logger     *slog.Logger
	// TenantID is reported as the vault identity's tenant.
	TenantID string
	// Refresh, when set, is told that schedules may have changed.
	Refresh func()
	// Space, when set, fails a backup that would start while the data
	// filesystem's free space is below its reserve.
	Space *capacity.Monitor
	// Home, when set, names (read in tx) the node that holds a disk's
	// volume, where its backups must run ("": any node).
	Home func(ctx context.Context, tx store.Tx, diskID string) (string, error)
	// Place, when set, names the node that creates a restored disk (its
	// restore task runs there: the node's --placement); unset, any node.
	Place func(ctx context.Context) (string, error)
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Service) refresh() {
	if s.Refresh != nil {
		s.Refresh()
	}
}

// Task types of the job queue.
const (
	TaskBackup         = "dataprotection.backup"
	TaskRestore        = "dataprotection.restore"
	TaskRetention      = "dataprotection.retention"
	TaskDeleteInstance = "dataprotection.deleteInstance"
)

func getJSON(ctx context.Context, tx store.Tx, kind, key string, v any) error {
	o, err := tx.Get(ctx, kind, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(o.Data, v); err != nil {
		return fmt.Errorf("decode %s %s: %w", kind, key, err)
	}
	return nil
}

func putJSON(ctx context.Context, tx store.Tx, kind, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", kind, err)
	}
	if err := tx.Put(ctx, &store.Object{Kind: kind, Key: key, Data: b}, store.PutOptions{}); err != nil {
		return fmt.Errorf("put %s %s: %w", kind, key, err)
	}
	return nil
}

func listJSON[T any](ctx context.Context, tx store.Tx, kind, prefix string) ([]T, error) {
	objs, err := tx.List(ctx, store.Query{Kind: kind, Prefix: prefix})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		var v T
		if err := json.Unmarshal(o.Data, &v); err != nil {
			return nil, fmt.Errorf("decode %s %s: %w", kind, o.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// derivedGUID makes a GUID-shaped ID from parts, so that re-firing the
// same schedule slot yields the same job ID.
func derivedGUID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	b := h[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func isNotFound(err error) bool {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, ErrNotFound) {
		return true
	}
	e := resource.AsError(err)
	return e != nil && e.Kind == resource.KindNotFound
}

// principalOf is the principal of a vault's managed identity.
func principalOf(v VaultResource) (identity.Principal, bool) {
	if v.Identity == nil || v.Identity.PrincipalID == "" {
		return identity.Principal{}, false
	}
	return identity.Principal{ID: v.Identity.PrincipalID, Kind: identity.ManagedIdentity, TenantID: v.Identity.TenantID,
		DisplayName: v.Name, ResourceID: v.ID}, true
}

// Caller describes who makes a request, for systemData.
type Caller struct {
	Name string
	Type string // User, Application, ManagedIdentity
}

func (s *Service) stamp(old *SystemData, c Caller) *SystemData {
	now := s.Clock.Now().UTC()
	sd := &SystemData{CreatedBy: c.Name, CreatedByType: c.Type, CreatedAt: now}
	if old != nil && !old.CreatedAt.IsZero() {
		sd.CreatedBy, sd.CreatedByType, sd.CreatedAt = old.CreatedBy, old.CreatedByType, old.CreatedAt
	}
	sd.LastModifiedBy, sd.LastModifiedByType, sd.LastModifiedAt = c.Name, c.Type, now
	return sd
}

func parseOrZero(s string) resource.ID {
	id, err := resource.Parse(s)
	if err != nil {
		return resource.ID{}
	}
	return id
}

func newID() string { return identity.NewGUID() }

func itoa(n int) string { return strconv.Itoa(n) }

func asResourceError(err error) *resource.Error { return resource.AsError(err) }

package dataprotection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"coffer/internal/odata"
	"coffer/internal/resource"
	"coffer/internal/store"
)

// rpRecord is a stored recovery point. It is written only after its
// snapshot is committed, so every listed point is complete.
type rpRecord struct {
	Name       string    `json:"name"` // recoveryPointId
	InstanceID string    `json:"instanceId"`
	Time       time.Time `json:"time"`
	Expiry     time.Time `json:"expiry"`
	Tag        string    `json:"tag"`
	PolicyID   string    `json:"policyId"`
	PolicyName string    `json:"policyName"`
	SnapshotID string    `json:"snapshotId"`
	DiskID     string    `json:"diskId"`
	DiskSKU    string    `json:"diskSku,omitempty"`
	SizeBytes  int64     `json:"sizeBytes"`
	Location   string    `json:"location"`
	JobID      string    `json:"jobId"`
	Scheduled  bool      `json:"scheduled"`
	// Deleting: its deletion has begun (its snapshot may be gone); it is
	// no longer listed or restorable, and the deletion that marked it, or
	// the next, removes it.
	Deleting bool `json:"deleting,omitempty"`
	// Verify is its last verification; nil: never verified.
	Verify *verifyRecord `json:"verify,omitempty"`
}

// verifyRecord is the outcome of a recovery point's last verification.
type verifyRecord struct {
	State   string    `json:"state"` // VerifyVerified or VerifyFailed
	Time    time.Time `json:"time"`
	Message string    `json:"message,omitempty"`
	Source  string    `json:"source"` // VerifySource*
}

// Verify states of a recovery point (RPVerification.State).
const (
	VerifyNotVerified = "NotVerified"
	VerifyVerified    = "Verified"
	VerifyFailed      = "VerifyFailed"
)

// What set a recovery point's verify state (RPVerification.Source).
const (
	// VerifySourcePoint: VerifyRecoveryPoint read back every chunk of
	// the point's snapshot.
	VerifySourcePoint = "RecoveryPointVerify"
	// VerifySourceRepository: a repository verify (Coffer.Admin/verify)
	// re-read every pack and checked every chunk.
	VerifySourceRepository = "RepositoryVerify"
)

// wire is the record as the Coffer extension property.
func (v *verifyRecord) wire() *RPVerification {
	if v == nil {
		return &RPVerification{State: VerifyNotVerified}
	}
	return &RPVerification{State: v.State, LastVerifiedTime: formatTime(v.Time), Message: v.Message, Source: v.Source}
}

func rpKey(instanceID, name string) string {
	return strings.ToLower(instanceID + "/recoveryPoints/" + name)
}

func (r rpRecord) key() string { return rpKey(r.InstanceID, r.Name) }

func (r rpRecord) toResource() RecoveryPointResource {
	return RecoveryPointResource{
		ID:   r.InstanceID + "/recoveryPoints/" + r.Name,
		Name: r.Name,
		Type: RecoveryPointType,
		Time: r.Time, Expiry: r.Expiry, SizeBytes: r.SizeBytes,
		Properties: RecoveryPointProps{
			ObjectType: ObjectTypeDiscreteRP, RecoveryPointID: r.Name, RecoveryPointTime: formatTime(r.Time),
			RecoveryPointType: "Incremental", FriendlyName: r.JobID, PolicyName: r.PolicyName,
			RetentionTagName: r.Tag, RetentionTagVersion: fmt.Sprint(r.Time.Unix()), RecoveryPointState: "Completed",
			ExpiryTime: formatTime(r.Expiry),
			RecoveryPointDataStoresDetails: []RPDataStoreDetail{{
				ID: r.SnapshotID, Type: DataStoreOperational, CreationTime: formatTime(r.Time), ExpiryTime: formatTime(r.Expiry),
				MetaData: fmt.Sprintf(`{"snapshotId":%q,"diskSku":%q,"sizeInBytes":%d}`, r.SnapshotID, r.DiskSKU, r.SizeBytes),
				State:    "COMMITTED", Visible: true,
			}},
			CofferVerification: r.Verify.wire(),
		},
	}
}

// rpsPrefix is the key prefix of the recovery points of instanceID.
func rpsPrefix(instanceID string) string { return strings.ToLower(instanceID) + "/recoverypoints/" }

// listRPs reads the recovery points of instanceID, oldest first.
func listRPs(ctx context.Context, tx store.Tx, instanceID string) ([]rpRecord, error) {
	rs, err := listJSON[rpRecord](ctx, tx, kindRecoveryPoint, rpsPrefix(instanceID))
	if err != nil {
		return nil, err
	}
	sortRPs(rs)
	return rs, nil
}

// sortRPs sorts recovery points oldest first.
func sortRPs(rs []rpRecord) {
	sort.SliceStable(rs, func(i, j int) bool {
		if !rs[i].Time.Equal(rs[j].Time) {
			return rs[i].Time.Before(rs[j].Time)
		}
		return rs[i].Name < rs[j].Name
	})
}

// rpsPage is how many rows one read of listRPsOf returns at most.
const rpsPage = 1000

// listRPsOf reads the recovery points of each of the instances
// instanceIDs as listRPs does, but with ranged reads of up to rpsPage rows
// over the key range that holds them all, rather than one read per
// instance: a page of instances costs a read per rpsPage points. It
// returns them by the instances' lower-cased IDs.
func listRPsOf(ctx context.Context, tx store.Tx, instanceIDs []string) (map[string][]rpRecord, error) {
	out := make(map[string][]rpRecord, len(instanceIDs))
	if len(instanceIDs) == 0 {
		return out, nil
	}
	// Every point of an instance has a key above the instance's own
	// (its prefix) and below its prefix's end.
	var lo, hi string
	for i, id := range instanceIDs {
		key := strings.ToLower(id)
		out[key] = nil
		end, ok := store.PrefixEnd(rpsPrefix(id))
		if !ok {
			return nil, fmt.Errorf("list recovery points: the instance ID %q has no key range", id)
		}
		if i == 0 || key < lo {
			lo = key
		}
		if end > hi {
			hi = end
		}
	}
	const marker = "/recoverypoints/"
	for after := lo; ; {
		objs, err := tx.List(ctx, store.Query{Kind: kindRecoveryPoint, After: after, Limit: rpsPage})
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", kindRecoveryPoint, err)
		}
		for _, o := range objs {
			if o.Key >= hi {
				return sortedRPs(out), nil
			}
			i := strings.Index(o.Key, marker)
			if i < 0 {
				continue
			}
			inst := o.Key[:i]
			if _, ok := out[inst]; !ok {
				continue // another instance's, within the range
			}
			var r rpRecord
			if err := json.Unmarshal(o.Data, &r); err != nil {
				return nil, fmt.Errorf("decode %s %s: %w", kindRecoveryPoint, o.Key, err)
			}
			out[inst] = append(out[inst], r)
		}
		if len(objs) < rpsPage {
			return sortedRPs(out), nil
		}
		after = objs[len(objs)-1].Key
	}
}

func sortedRPs(m map[string][]rpRecord) map[string][]rpRecord {
	for _, rs := range m {
		sortRPs(rs)
	}
	return m
}

// RPFilter selects recovery points by time (the $filter of the list).
type RPFilter struct{ Start, End time.Time }

// ParseRPFilter parses a recovery point $filter: Azure's
// "startDate eq '2021-08-01T00:00:00Z' and endDate eq '2021-08-31T00:00:00Z'"
// (points at or after the start, at or before the end), where startDate
// also takes ge and gt and endDate le and lt, each at most once, joined by
// "and". Anything else — "or", "not", another property, an operator that
// would turn a bound around — is a 400 InvalidFilter saying what, never a
// silently different list.
func ParseRPFilter(f string) (RPFilter, error) {
	var out RPFilter
	bad := func(format string, args ...any) error {
		return resource.InvalidFilter(f, fmt.Sprintf(format, args...))
	}
	e, err := odata.Parse(f)
	var terms []odata.Expr
	if err == nil {
		terms, err = odata.Conjuncts(e)
	}
	if err != nil {
		return out, bad("%s", odata.Reason(err))
	}
	for _, term := range terms {
		c, ok := term.(*odata.Compare)
		if !ok {
			return out, bad("%s is not supported: compare startDate and endDate", term)
		}
		var bound *time.Time
		var shift time.Duration // gt and lt exclude the instant itself
		switch name := strings.ToLower(c.Name); {
		case name == "startdate" && (c.Op == odata.Eq || c.Op == odata.Ge):
			bound = &out.Start
		case name == "startdate" && c.Op == odata.Gt:
			bound, shift = &out.Start, time.Nanosecond
		case name == "enddate" && (c.Op == odata.Eq || c.Op == odata.Le):
			bound = &out.End
		case name == "enddate" && c.Op == odata.Lt:
			bound, shift = &out.End, -time.Nanosecond
		case name == "startdate":
			return out, bad("startDate takes eq, ge or gt (points at or after it), not %s", c.Op)
		case name == "enddate":
			return out, bad("endDate takes eq, le or lt (points at or before it), not %s", c.Op)
		default:
			return out, bad("unknown property '%s': a recovery point filter compares startDate and endDate", c.Name)
		}
		if !bound.IsZero() {
			return out, bad("%s is given twice", c.Name)
		}
		t, err := c.Value.Time()
		if err != nil {
			return out, bad("%s", odata.Reason(err))
		}
		*bound = t.Add(shift)
	}
	return out, nil
}

// Match reports whether t is within the filter.
func (f RPFilter) Match(t time.Time) bool {
	return (f.Start.IsZero() || !t.Before(f.Start)) && (f.End.IsZero() || !t.After(f.End))
}

// ListRecoveryPoints lists an instance's recovery points, oldest first.
func (s *Service) ListRecoveryPoints(ctx context.Context, instanceID resource.ID, f RPFilter) ([]RecoveryPointResource, error) {
	var out []RecoveryPointResource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		r, err := s.getInstance(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		rps, err := listRPs(ctx, tx, r.Resource.ID)
		for _, rp := range rps {
			if !rp.Deleting && f.Match(rp.Time) {
				out = append(out, rp.toResource())
			}
		}
		return err
	})
	return out, err
}

func (s *Service) getRP(ctx context.Context, tx store.Tx, instanceID resource.ID, name string) (rpRecord, error) {
	var rp rpRecord
	err := getJSON(ctx, tx, kindRecoveryPoint, rpKey(instanceID.String(), name), &rp)
	if errors.Is(err, store.ErrNotFound) || (err == nil && rp.Deleting) {
		e := resource.Errorf(resource.KindNotFound, CodeRecoveryPointNotFound, "The recovery point '%s' of backup instance '%s' was not found.", name, instanceID.Name())
		e.Err = errRecoveryPointNotFound
		return rp, e
	}
	return rp, err
}

// errRecoveryPointNotFound is wrapped by getRP's 404.
var errRecoveryPointNotFound = errors.New("recovery point not found")

// GetRecoveryPoint returns one recovery point.
func (s *Service) GetRecoveryPoint(ctx context.Context, instanceID resource.ID, name string) (RecoveryPointResource, error) {
	var out RecoveryPointResource
	err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := s.getInstance(ctx, tx, instanceID); err != nil {
			return err
		}
		rp, err := s.getRP(ctx, tx, instanceID, name)
		out = rp.toResource()
		return err
	})
	return out, err
}

// VerifyRecoveryPoint verifies one recovery point: it reads back every
// chunk its snapshot references (index pages and data, through the chunk
// store, which checks each against its content ID) and records the
// outcome on the point: Verified, or VerifyFailed with what was wrong (a
// damaged chunk, the snapshot gone). An error means the check could not
// run, and nothing is recorded. It runs in the request, for as long as
// reading the point's data takes. The caller needs
// ActionInstanceValidateRestore on the instance (see docs/api.md).
func (s *Service) VerifyRecoveryPoint(ctx context.Context, instanceID resource.ID, name string) (RecoveryPointResource, error) {
	var rp rpRecord
	if err := s.Store.View(ctx, func(tx store.Tx) error {
		if _, err := s.getInstance(ctx, tx, instanceID); err != nil {
			return err
		}
		var err error
		rp, err = s.getRP(ctx, tx, instanceID, name)
		return err
	}); err != nil {
		return RecoveryPointResource{}, err
	}
	v := verifyRecord{Source: VerifySourcePoint}
	check, err := s.Disks.VerifySnapshot(ctx, parseOrZero(rp.SnapshotID))
	switch {
	case isNotFound(err):
		v.State, v.Message = VerifyFailed, fmt.Sprintf("The recovery point's snapshot %s no longer exists.", rp.SnapshotID)
	case err != nil:
		return RecoveryPointResource{}, fmt.Errorf("verify recovery point %s: %w", name, err)
	case len(check.Problems) > 0:
		v.State = VerifyFailed
		v.Message = fmt.Sprintf("%d of %d chunks could not be read back or did not match their content IDs: %s", len(check.Problems), check.Chunks,
			strings.Join(check.Problems[:min(3, len(check.Problems))], "; "))
	default:
		v.State, v.Message = VerifyVerified, fmt.Sprintf("Every chunk of the recovery point (%d) was read back and matched its content ID.", check.Chunks)
	}
	v.Time = s.Clock.Now().UTC()
	var out RecoveryPointResource
	err = s.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := s.getRP(ctx, tx, instanceID, name)
		if err != nil {
			return err
		}
		cur.Verify = &v
		out = cur.toResource()
		return putJSON(ctx, tx, kindRecoveryPoint, cur.key(), cur)
	})
	return out, err
}

// RecordRepositoryVerify records a repository verify that ended at at on
// every recovery point: those whose snapshot references a damaged chunk
// (failed maps their snapshots' resource IDs, in any case, to what was
// wrong) are VerifyFailed, the others Verified. A verify that could not
// run records nothing (do not call this).
func (s *Service) RecordRepositoryVerify(ctx context.Context, at time.Time, failed map[string]string) error {
	lower := make(map[string]string, len(failed))
	for id, why := range failed {
		lower[strings.ToLower(id)] = why
	}
	return s.Store.Update(ctx, func(tx store.Tx) error {
		rps, err := listJSON[rpRecord](ctx, tx, kindRecoveryPoint, "")
		if err != nil {
			return err
		}
		for _, rp := range rps {
			if rp.Deleting {
				continue
			}
			v := &verifyRecord{State: VerifyVerified, Time: at.UTC(), Source: VerifySourceRepository,
				Message: "A repository verify re-read every pack and found every chunk intact."}
			if why, ok := lower[strings.ToLower(rp.SnapshotID)]; ok {
				v.State, v.Message = VerifyFailed, "A repository verify found a damaged chunk this recovery point needs: "+why
			}
			rp.Verify = v
			if err := putJSON(ctx, tx, kindRecoveryPoint, rp.key(), rp); err != nil {
				return err
			}
		}
		return nil
	})
}

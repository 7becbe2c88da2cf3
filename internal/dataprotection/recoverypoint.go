package dataprotection

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

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
		},
	}
}

func listRPs(ctx context.Context, tx store.Tx, instanceID string) ([]rpRecord, error) {
	rs, err := listJSON[rpRecord](ctx, tx, kindRecoveryPoint, strings.ToLower(instanceID)+"/recoverypoints/")
	if err != nil {
		return nil, err
	}
	sort.SliceStable(rs, func(i, j int) bool {
		if !rs[i].Time.Equal(rs[j].Time) {
			return rs[i].Time.Before(rs[j].Time)
		}
		return rs[i].Name < rs[j].Name
	})
	return rs, nil
}

// RPFilter selects recovery points by time (the $filter of the list).
type RPFilter struct{ Start, End time.Time }

// ParseRPFilter parses a recovery point $filter such as
// "startDate eq '2021-08-01T00:00:00Z' and endDate eq '2021-08-31T00:00:00Z'"
// (Azure's form; gt/ge/lt/le are accepted too).
func ParseRPFilter(f string) (RPFilter, error) {
	var out RPFilter
	f = strings.TrimSpace(f)
	if f == "" {
		return out, nil
	}
	if u, err := url.QueryUnescape(f); err == nil {
		f = u
	}
	for _, clause := range splitAnd(f) {
		parts := strings.Fields(clause)
		if len(parts) < 3 {
			return out, badFilter(f)
		}
		name, op, val := parts[0], strings.ToLower(parts[1]), strings.Trim(strings.Join(parts[2:], " "), "'\"")
		if op != "eq" && op != "ge" && op != "gt" && op != "le" && op != "lt" {
			return out, badFilter(f)
		}
		t, err := parseFilterTime(val)
		if err != nil {
			return out, badFilter(f)
		}
		switch strings.ToLower(name) {
		case "startdate":
			out.Start = t
		case "enddate":
			out.End = t
		default:
			return out, badFilter(f)
		}
	}
	return out, nil
}

func splitAnd(f string) []string {
	var out []string
	for _, p := range strings.Split(f, " and ") {
		for _, q := range strings.Split(p, " AND ") {
			if strings.TrimSpace(q) != "" {
				out = append(out, strings.TrimSpace(q))
			}
		}
	}
	return out
}

func parseFilterTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05 PM", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("bad time")
}

func badFilter(f string) error {
	return userError("InvalidFilter", "The $filter '%s' is invalid: use startDate eq '<date-time>' and/or endDate eq '<date-time>'.", f)
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
		return rp, resource.Errorf(resource.KindNotFound, CodeRecoveryPointNotFound, "The recovery point '%s' of backup instance '%s' was not found.", name, instanceID.Name())
	}
	return rp, err
}

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

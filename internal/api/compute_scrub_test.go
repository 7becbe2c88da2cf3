package api

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/compute"
	"coffer/internal/operation"
	"coffer/internal/store/memstore"
)

// TestScrubAccessResults: a beginGetAccess result stored by an earlier
// release (with the access URLs, so the grant's token) is rewritten at start
// into the grant's reference, from which the same URLs are derived again.
func TestScrubAccessResults(t *testing.T) {
	ctx := context.Background()
	svc := &compute.Service{GrantKey: bytes.Repeat([]byte{7}, 32)}
	ops := &operation.Manager{Store: memstore.New(), Clock: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	const disk = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d"
	ref := compute.GrantRef{ID: "0d9d9a4e-2a38-4c3b-9d1e-6b1f7f1e2a3b", ResourceID: disk, Type: compute.TypeDisks,
		UniqueID: "5f0a3c2e-8d41-4b7e-a6c9-1e2d3f4a5b6c", Access: compute.AccessWrite,
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Expires: time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC)}
	tok, err := svc.Token(ref)
	if err != nil {
		t.Fatal(err)
	}
	h := &computeHandlers{}
	old := AccessURI{AccessSAS: h.sasURL(&Request{BaseURL: "http://h"}, ref, tok), NBDURL: "nbd://h:1/" + tok}
	for _, rec := range []operation.Record{
		{ID: "old", Kind: accessKind(compute.TypeDisks), ResourceID: disk, Status: operation.Succeeded},
		{ID: "garbled", Kind: accessKind(compute.TypeDisks), ResourceID: disk, Status: operation.Succeeded},
		{ID: "other", Kind: "disks/create", ResourceID: disk, Status: operation.Succeeded},
	} {
		result := any(old)
		if rec.ID == "garbled" {
			result = AccessURI{AccessSAS: "http://h/_data/disks/x?sig=nope&st=x", NBDURL: "nbd://h:1/" + tok}
		}
		if _, err := ops.Complete(ctx, rec, result, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ScrubAccessResults(ctx, ops, svc); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]*compute.GrantRef{"old": &ref, "garbled": nil} {
		rec, err := ops.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(rec.Result), tok) {
			t.Errorf("operation %s still holds the token: %s", id, rec.Result)
		}
		if want == nil {
			if rec.Result != nil {
				t.Errorf("unreadable result kept: %s", rec.Result)
			}
			continue
		}
		var got compute.GrantRef
		if err := json.Unmarshal(rec.Result, &got); err != nil || got != *want {
			t.Errorf("operation %s: reference %+v (%v), want %+v", id, got, err, *want)
		}
	}
	if rec, _ := ops.Get(ctx, "other"); !strings.Contains(string(rec.Result), tok) {
		t.Errorf("an operation of another kind was rewritten: %s", rec.Result)
	}
}

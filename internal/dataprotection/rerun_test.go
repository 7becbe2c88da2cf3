package dataprotection_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"coffer/internal/clock"
	"coffer/internal/dataprotection"
	"coffer/internal/store/memstore"
	"coffer/internal/store/storetest"
)

// TestPutRerunFindsResourceCreatedMeanwhile: the store may re-run an
// Update's function after a concurrent writer committed (the store
// contract; PostgreSQL's serialization failures). Here a writer creates
// the very resource between the two runs of the PUT that creates it
// (storetest.RerunWith): the second run must see it and update it (200,
// not 201, and the existing resource's rules), and a DELETE whose resource
// went meanwhile reports it absent.
func TestPutRerunFindsResourceCreatedMeanwhile(t *testing.T) {
	var between func()
	st := storetest.RerunWith(memstore.New(), func(context.Context) {
		if f := between; f != nil {
			between = nil
			f()
		}
	})
	e := newEnvOn(t, st, clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), nil)
	s := e.standard(true)
	caller := dataprotection.Caller{Name: "test"}

	vault := dataprotection.VaultID(subA, "rg-vault", "vault2")
	between = func() { e.vault(subA, "rg-vault", "vault2", "local", false) }
	if _, created, err := e.svc.PutVault(e.ctx, caller, vault,
		[]byte(`{"location": "local", "properties": {"storageSettings": [{"datastoreType": "VaultStore", "type": "LocallyRedundant"}]}}`)); err != nil || created {
		t.Errorf("PUT of a vault created meanwhile: created %v, %v", created, err)
	}

	policy := s.vault.Child("backupPolicies", "P2")
	between = func() { e.policy(s.vault, "P2", dataprotection.DefaultPolicyTemplate()) }
	body, _ := json.Marshal(map[string]any{"properties": dataprotection.DefaultPolicyTemplate()})
	if _, created, err := e.svc.PutPolicy(e.ctx, policy, body); err != nil || created {
		t.Errorf("PUT of a policy created meanwhile: created %v, %v", created, err)
	}

	bi := mustJSON(map[string]any{"properties": biJSON(s.disk, "local", s.policy, s.snapRG.String())})
	between = func() {
		if _, _, err := e.svc.PutInstance(e.ctx, caller, s.bi, bi); err != nil {
			t.Errorf("PUT between the runs: %v", err)
		}
	}
	if _, created, err := e.svc.PutInstance(e.ctx, caller, s.bi, bi); err != nil || created {
		t.Errorf("PUT of an instance created meanwhile: created %v, %v", created, err)
	}

	between = func() {
		if _, err := e.svc.DeletePolicy(e.ctx, policy); err != nil {
			t.Errorf("DELETE between the runs: %v", err)
		}
	}
	if existed, err := e.svc.DeletePolicy(e.ctx, policy); err != nil || existed {
		t.Errorf("DELETE of a policy deleted meanwhile: existed %v, %v", existed, err)
	}
	between = func() {
		if _, err := e.svc.DeleteVault(e.ctx, vault); err != nil {
			t.Errorf("DELETE between the runs: %v", err)
		}
	}
	if existed, err := e.svc.DeleteVault(e.ctx, vault); err != nil || existed {
		t.Errorf("DELETE of a vault deleted meanwhile: existed %v, %v", existed, err)
	}
}

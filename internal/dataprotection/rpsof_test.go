package dataprotection

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"coffer/internal/store"
	"coffer/internal/store/memstore"
)

// TestListRPsOf: the ranged read of several instances' recovery points
// returns, for each, what listRPs returns for it alone, across pages of
// the read, with instance names that are prefixes of one another (whose
// points' keys do not sort as the instances do) and with the points of an
// instance not asked for among them.
func TestListRPsOf(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	vault := "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v/backupInstances/"
	counts := map[string]int{"bi-0": 3, "bi-1": rpsPage + 7, "bi-1-2": 5, "bi-10": 2, "bi-2": 0, "bi-3": 4}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := st.Update(ctx, func(tx store.Tx) error {
		for name, n := range counts {
			for i := range n {
				r := rpRecord{Name: fmt.Sprintf("rp-%05d", n-i), InstanceID: vault + name, Time: t0.Add(time.Duration(i) * time.Minute)}
				if err := putJSON(ctx, tx, kindRecoveryPoint, r.key(), r); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	asked := []string{vault + "bi-10", vault + "bi-1", vault + "bi-1-2", vault + "bi-2", vault + "bi-3"}
	err = st.View(ctx, func(tx store.Tx) error {
		got, err := listRPsOf(ctx, tx, asked)
		if err != nil {
			return err
		}
		if len(got) != len(asked) {
			t.Errorf("points of %d instances, want %d", len(got), len(asked))
		}
		for _, id := range asked {
			want, err := listRPs(ctx, tx, id)
			if err != nil {
				return err
			}
			rs := got[strings.ToLower(id)]
			if len(rs) != counts[id[len(vault):]] || !slices.EqualFunc(rs, want, func(a, b rpRecord) bool { return a.key() == b.key() }) {
				t.Errorf("%s: %d points, want the %d listRPs lists, in its order", id[len(vault):], len(rs), len(want))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"coffer/internal/authorization"
	"coffer/internal/compute"
	"coffer/internal/dataprotection"
	"coffer/internal/job"
	"coffer/internal/store/postgres"
	"coffer/internal/store/postgres/pgtest"
)

// TestDataProtectionOnPostgres runs TestDataProtectionHowTo's flow (the
// official SDKs; both restores byte-identical by hash to the source at
// their points) on a server started with `--db postgres://…`, then looks
// in the database: every metadata function ran there and nothing in the
// data dir (see checkOnPostgres).
func TestDataProtectionOnPostgres(t *testing.T) {
	db := pgtest.Start(t).NewDatabase(t)
	e := dataProtectionHowTo(t, Options{DB: db})
	checkOnPostgres(t, e.Env, db)
}

// checkOnPostgres checks that the server e, started with --db db, keeps
// its metadata in PostgreSQL: its store is the PostgreSQL one, the data
// dir holds no SQLite file, /metrics counts its retries, and the database holds what every metadata
// function wrote (kind_index keeps a row for each kind ever written, even
// once its objects are deleted): resources, role assignments, operations,
// job records and recovery points in objects, finished tasks in the job
// queue's tables, packs and chunks in the chunk index.
func checkOnPostgres(t *testing.T, e *Env, db string) {
	t.Helper()
	if _, ok := e.Server.Store().(*postgres.Store); !ok {
		t.Fatalf("the server's store is %T with --db postgres://…", e.Server.Store())
	}
	for _, f := range []string{"metadata.db", "metadata.db-wal"} {
		if _, err := os.Stat(filepath.Join(e.DataDir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the data dir holds %s with --db postgres://… (%v)", f, err)
		}
	}
	if m := metricsText(t, e); !strings.Contains(m, "\ncoffer_metadata_transaction_retries_total ") {
		t.Errorf("/metrics lacks the PostgreSQL store's retries")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT kind FROM kind_index`)
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"Microsoft.Resources/subscriptions", "Microsoft.Resources/resourceGroups",
		authorization.Kind, "operation", job.Kind,
		compute.KindDisk, compute.KindSnapshot,
		dataprotection.VaultResourceType, dataprotection.InstanceType, dataprotection.RecoveryPointType,
	} {
		if !slices.Contains(kinds, k) {
			t.Errorf("no %s written to PostgreSQL (kinds written: %v)", k, kinds)
		}
	}
	for _, q := range []struct{ what, sql string }{
		{"finished job-queue tasks", `SELECT count(*) FROM job_done`},
		{"packs in the chunk index", `SELECT count(*) FROM chunk_packs`},
	} {
		var n int
		if err := conn.QueryRow(ctx, q.sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q.what, err)
		}
		if n == 0 {
			t.Errorf("no %s in PostgreSQL", q.what)
		}
	}
}

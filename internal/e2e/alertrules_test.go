package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/nbd/nbdtest"
	"coffer/internal/prom"
	"coffer/internal/testenv"
)

// TestMetricsAndAlertingRules runs what every metric family counts — an
// NBD read and a refused export name, a SAS write, a backup, a verify and a
// garbage collection — and checks the figures of a real scrape (and that a
// scrape with a forged token is refused); that every
// metric docs/alerts.rules.yml and docs/operations.md name is one the
// server exposes; and, with promtool, that the scrape passes `promtool
// check metrics`, the rules `promtool check rules`, and the rules' unit
// tests (testdata/alerts/rules_test.yml) fire as they say on series with
// the labels Coffer exposes.
func TestMetricsAndAlertingRules(t *testing.T) {
	ctx := context.Background()
	env := Start(t, Options{})
	c := env.Client("")
	if err := env.Server.Monitor().Tick(ctx); err != nil {
		t.Fatal(err)
	}

	createGroups(t, ctx, c, "rg-disks", "rg-snaps", "rg-vault", "rg-restore")
	disk, err := c.CreateDisk(ctx, "rg-disks", "data", client.DiskSpec{Location: "local", SizeGB: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	g, err := c.GrantAccess(ctx, client.Disks, "rg-disks", "data", "Write", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutPages(ctx, g.AccessSAS, 0, bytes.Repeat([]byte{0xa5}, 64<<10)); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(g.NBDURL)
	nc, err := nbdtest.Dial(ctx, u.Host, strings.TrimPrefix(u.Path, "/"), nbdtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8192)
	if _, err := nc.ReadAt(buf, 0); err != nil || buf[0] != 0xa5 {
		t.Fatalf("NBD read: %v", err)
	}
	nc.Disconnect()
	if _, err := nbdtest.Dial(ctx, u.Host, "not-a-grant", nbdtest.Options{}); err == nil {
		t.Fatal("an unknown export name was served")
	}
	if err := c.RevokeAccess(ctx, client.Disks, "rg-disks", "data"); err != nil {
		t.Fatal(err)
	}
	bi := protectDisk(t, ctx, c, disk.ID, "rg-vault", "vault", "rg-snaps", "rg-restore", 4)
	id, err := c.BackupNow(ctx, bi.rg, bi.vault, bi.name, "BackupIntervals", "Default")
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJobDone(t, ctx, c, bi.rg, bi.vault, id); j.Properties.Status != "Completed" {
		t.Fatalf("backup: %+v", j.Properties)
	}
	for _, op := range []string{"verify", "gc"} {
		if err := c.Admin(ctx, op, nil); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	if err := env.Server.Monitor().Tick(ctx); err != nil {
		t.Fatal(err)
	}

	text := scrapeText(t, env, env.Admin.Token)
	ex, err := prom.Parse(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics: %v\n%s", err, text)
	}
	inst := []string{"subscription", c.Subscription, "resource_group", bi.rg, "vault", bi.vault, "backup_instance", bi.name}
	for _, w := range []struct {
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}{
		{"coffer_nbd_requests_total", []string{"cmd", "read"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"coffer_nbd_request_duration_seconds_count", []string{"cmd", "read"}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"coffer_nbd_read_bytes_total", nil, func(v float64) bool { return v >= 8192 }, ">= 8192"},
		{"coffer_nbd_connections_total", nil, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"coffer_nbd_exports_refused_total", nil, func(v float64) bool { return v == 1 }, "1"},
		{"coffer_jobs_ended_total", []string{"operation", "Backup", "status", "Completed"}, func(v float64) bool { return v == 1 }, "1"},
		{"coffer_job_duration_seconds_count", []string{"operation", "Backup"}, func(v float64) bool { return v == 1 }, "1"},
		{"coffer_job_transferred_bytes_total", []string{"operation", "Backup"}, func(v float64) bool { return v == 64<<10 }, "65536"},
		{"coffer_repository_added_bytes_total", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"coffer_repository_added_raw_bytes_total", nil, func(v float64) bool { return v >= 64<<10 }, ">= 65536"},
		{"coffer_repository_packs", nil, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"coffer_repository_deduplication_ratio", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"coffer_verify_last_run_success", nil, func(v float64) bool { return v == 1 }, "1"},
		{"coffer_verify_last_run_timestamp_seconds", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"coffer_gc_last_run_success", nil, func(v float64) bool { return v == 1 }, "1"},
		{"coffer_backup_instance_last_recovery_point_age_seconds", inst, func(v float64) bool { return v >= 0 && v < 3600 }, "in [0, 3600)"},
		{"coffer_backup_instance_rpo_missed", inst, func(v float64) bool { return v == 0 }, "0"},
		{"coffer_backup_instance_protected", inst, func(v float64) bool { return v == 1 }, "1"},
		{"coffer_data_free_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
	} {
		v, ok := ex.Get(w.name, w.labels...)
		if !ok || !w.ok(v) {
			t.Errorf("%s%v = %v (present: %v), want %s", w.name, w.labels, v, ok, w.want)
		}
	}

	// A scrape that sends a token must send a good one: a forged one is
	// refused, not served as anonymous.
	req, _ := http.NewRequest(http.MethodGet, env.Endpoint+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.Zm9yZ2Vk")
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || bytes.Contains(b, []byte("coffer_")) {
		t.Errorf("a scrape with a forged token: %d %s", resp.StatusCode, b)
	}

	// Every metric the example rules and the operations guide name exists.
	root := filepath.Join("..", "..")
	rules := filepath.Join(root, "docs", "alerts.rules.yml")
	for _, doc := range []string{rules, filepath.Join(root, "docs", "operations.md")} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		names := metricNames(b)
		if len(names) == 0 {
			t.Errorf("%s names no metric", doc)
		}
		for _, n := range names {
			if postgresOnlyMetrics[n] {
				continue
			}
			if !exposes(ex, n) {
				t.Errorf("%s names %s, which /metrics does not expose", doc, n)
			}
		}
	}

	promtool, ok := testenv.HaveProgram(t, "promtool")
	if !ok {
		return
	}
	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(text)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	dir := t.TempDir()
	for src, dst := range map[string]string{rules: "alerts.rules.yml", filepath.Join("testdata", "alerts", "rules_test.yml"): "rules_test.yml"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	test := exec.Command(promtool, "test", "rules", "rules_test.yml")
	test.Dir = dir
	if out, err := test.CombinedOutput(); err != nil {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}

// scrapeText returns the body of /metrics, scraped with token (when
// given).
func scrapeText(t *testing.T, env *Env, token string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.Endpoint+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v %s", resp.StatusCode, err, b)
	}
	return b
}

var metricNameRE = regexp.MustCompile(`\bcoffer_[a-z0-9_]*[a-z0-9]\b`)

// metricNames returns the distinct coffer_ metric names in a document
// (a name ending in _ or * is a prefix, not a name).
// postgresOnlyMetrics are the metrics only a PostgreSQL metadata store
// exposes (its transaction retries; SQLite's writes never re-run): the
// operations guide names them in its PostgreSQL section.
var postgresOnlyMetrics = map[string]bool{
	"coffer_metadata_transaction_retries_total":             true,
	"coffer_metadata_transaction_conflicts_exhausted_total": true,
	"coffer_metadata_transaction_deadlocks_total":           true,
}

func metricNames(doc []byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, loc := range metricNameRE.FindAllIndex(doc, -1) {
		if loc[1] < len(doc) && (doc[loc[1]] == '*' || doc[loc[1]] == '_') {
			continue
		}
		if n := string(doc[loc[0]:loc[1]]); !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// exposes reports whether name is a family of ex, or a histogram's
// _bucket, _sum or _count series.
func exposes(ex *prom.Exposition, name string) bool {
	if _, ok := ex.Types[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && ex.Types[base] == prom.Histogram {
			return true
		}
	}
	return false
}

package job_test

import (
	"strings"
	"testing"
	"time"

	"coffer/internal/job"
	"coffer/internal/resource"
)

// filterJobs are the records the filter table runs against: one of each
// kind, a day apart from t0.
var filterJobs = []job.Record{
	{ID: "ok", Operation: job.OpBackup, IsUserTriggered: true, Status: job.Completed, StartTime: t0, EndTime: t0.Add(time.Minute)},
	{ID: "sched", Operation: job.OpBackup, Status: job.Failed, StartTime: t0.Add(24 * time.Hour), EndTime: t0.Add(25 * time.Hour)},
	{ID: "restore", Operation: job.OpRestore, Status: job.InProgress, StartTime: t0.Add(48 * time.Hour)},
	{ID: "expire", Operation: job.OpRetention, Status: job.Cancelled, StartTime: t0.Add(72 * time.Hour), EndTime: t0.Add(73 * time.Hour)},
}

func TestParseFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   string // IDs of the matching filterJobs, comma-separated
	}{
		{"", "ok,sched,restore,expire"},
		{"status eq 'Failed'", "sched"},
		{"STATUS EQ 'failed'", "sched"},
		{"status eq Failed", "sched"},
		{"status ne 'Completed'", "sched,restore,expire"},
		{"status eq 'Failed' or status eq 'Cancelled'", "sched,expire"},
		{"status eq 'Failed' and status eq 'Completed'", ""},
		{"operation eq 'Backup'", "ok,sched"},
		{"operation eq 'OnDemandBackup'", "ok"},
		{"operation eq 'ScheduledBackup'", "sched"},
		{"operation eq 'Restore' or operation eq 'Retention'", "restore,expire"},
		{"not (operation eq 'Backup')", "restore,expire"},
		{"operation eq 'Backup' and (status eq 'Failed' or status eq 'InProgress')", "sched"},
		{"(operation eq 'Backup' and status eq 'Completed') or operation eq 'Retention'", "ok,expire"},
		{"startTime ge '2026-01-02T00:00:00Z'", "sched,restore,expire"},
		{"startTime gt '2026-01-02T00:00:00Z'", "restore,expire"},
		{"startTime ge '2026-01-02T00:00:00Z' and startTime lt '2026-01-04T00:00:00Z'", "sched,restore"},
		{"startTime le 2026-01-02T00:00:00Z", "ok,sched"},
		{"startTime ge '2026-01-02' and startTime le '2026-01-03 12:00:00 AM'", "sched,restore"},
		{"endTime lt '2026-01-03T00:00:00Z'", "ok,sched"},
		{"endTime ge '2026-01-01T00:00:00Z'", "ok,sched,expire"},
		{"not endTime ge '2026-01-01T00:00:00Z'", "restore"},
	}
	for _, tc := range tests {
		f, err := job.ParseFilter(tc.filter)
		if err != nil {
			t.Errorf("ParseFilter(%q): %v", tc.filter, err)
			continue
		}
		var got []string
		for _, r := range filterJobs {
			if f.Match(r) {
				got = append(got, r.ID)
			}
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("ParseFilter(%q) matches %v, want %s", tc.filter, got, tc.want)
		}
	}
}

func TestParseFilterRefuses(t *testing.T) {
	tests := []struct{ filter, says string }{
		{"status eq 'Done'", "status 'Done' is not one of InProgress, Completed, Failed, Cancelled"},
		{"status gt 'Failed'", "status takes eq or ne, not gt"},
		{"operation eq 'Copy'", "operation 'Copy' is not one of Backup, OnDemandBackup"},
		{"startTime eq '2026-01-01T00:00:00Z'", "startTime takes gt, ge, lt or le"},
		{"endTime ne '2026-01-01T00:00:00Z'", "endTime takes gt, ge, lt or le"},
		{"startTime ge 'yesterday'", "is not a date-time"},
		{"vaultName eq 'v'", "unknown property 'vaultName'"},
		{"contains(status, 'Fail')", "the function contains() is not supported"},
		{"status eq 'Failed' or", "expected a property name"},
		{"status eq 'Failed' xor status eq 'Completed'", "expected 'and', 'or' or the end"},
		{"status eq 'Fail\x00ed'", `Fail\x00ed`},
	}
	for _, tc := range tests {
		_, err := job.ParseFilter(tc.filter)
		e := resource.AsError(err)
		if e == nil || e.Kind != resource.KindBadRequest || e.Code != "InvalidFilter" || !strings.Contains(e.Message, tc.says) {
			t.Errorf("ParseFilter(%q) = %v; want 400 InvalidFilter saying %q", tc.filter, err, tc.says)
			continue
		}
		if strings.ContainsRune(e.Message, 0) {
			t.Errorf("ParseFilter(%q): message echoes a NUL: %q", tc.filter, e.Message)
		}
	}
}

// FuzzParseFilter: a jobs filter either parses into a filter that can be
// evaluated on any record, or is refused with 400 InvalidFilter.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"status eq 'Failed' or status eq 'Cancelled'", "not (operation eq 'Backup')",
		"startTime ge '2026-01-02' and startTime le '2026-01-03 12:00:00 AM'", "endTime lt 2026-01-03T00:00:00Z",
		"status eq 'x'", "f()", "(", "status eq 'Failed' and"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := job.ParseFilter(s)
		if err != nil {
			if e := resource.AsError(err); e == nil || e.Code != "InvalidFilter" {
				t.Fatalf("ParseFilter(%q): %v is not an InvalidFilter error", s, err)
			}
			return
		}
		for _, r := range filterJobs {
			flt.Match(r)
		}
	})
}

package dataprotection_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/resource"
	"coffer/internal/schedule"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// timeline records what happens to an instance's recovery points.
type timeline struct {
	e    *env
	bi   resource.ID
	loc  *time.Location
	seen map[string]dataprotection.RecoveryPointResource
	b    strings.Builder
	max  int
}

func newTimeline(e *env, bi resource.ID, tz string) *timeline {
	loc, err := schedule.LoadLocation(tz)
	if err != nil {
		e.t.Fatal(err)
	}
	return &timeline{e: e, bi: bi, loc: loc, seen: map[string]dataprotection.RecoveryPointResource{}}
}

func (tl *timeline) local(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		tl.e.t.Fatalf("time %q: %v", s, err)
	}
	return t.In(tl.loc).Format("Mon 2006-01-02 15:04 -0700")
}

func (tl *timeline) note(format string, args ...any) {
	fmt.Fprintf(&tl.b, "%s  ", tl.e.clk.Now().In(tl.loc).Format("2006-01-02 15:04 -0700"))
	fmt.Fprintf(&tl.b, format+"\n", args...)
}

// diff notes the points that appeared and disappeared since the last call.
func (tl *timeline) diff() {
	now := map[string]dataprotection.RecoveryPointResource{}
	for _, rp := range tl.e.rps(tl.bi) {
		now[rp.Name] = rp
	}
	var added, removed []dataprotection.RecoveryPointResource
	for n, rp := range now {
		if _, ok := tl.seen[n]; !ok {
			added = append(added, rp)
		}
	}
	for n, rp := range tl.seen {
		if _, ok := now[n]; !ok {
			removed = append(removed, rp)
		}
	}
	byTime := func(s []dataprotection.RecoveryPointResource) {
		sort.Slice(s, func(i, j int) bool { return s[i].Properties.RecoveryPointTime < s[j].Properties.RecoveryPointTime })
	}
	byTime(added)
	byTime(removed)
	for _, rp := range removed {
		tl.note("- expired  %s %-7s", tl.local(rp.Properties.RecoveryPointTime), rp.Properties.RetentionTagName)
	}
	for _, rp := range added {
		tl.note("+ backup   %s %-7s expires %s", tl.local(rp.Properties.RecoveryPointTime), rp.Properties.RetentionTagName, tl.local(rp.Properties.ExpiryTime))
	}
	tl.seen = now
	tl.max = max(tl.max, len(now))
	if n := tl.e.disks.snapshotCount(); n != len(now) {
		tl.e.t.Fatalf("%d snapshots for %d recovery points at %v", n, len(now), tl.e.clk.Now())
	}
}

// run advances the fake clock from one due instant to the next until
// until, letting the scheduler fire and the workers run at each.
func (tl *timeline) run(until time.Time) {
	e := tl.e
	for {
		next, _, err := e.sched.Tick(e.ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		e.drain()
		tl.diff()
		if next.IsZero() || next.After(until) {
			e.clk.Set(until)
			return
		}
		e.clk.Set(next)
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Fatalf("timeline differs from %s (run with -update to accept):\n%s", path, got)
	}
}

// TestScheduleHourlyDST: a 4-hourly policy at 02:00 in W. Europe Standard
// Time (Berlin) over two and a half weeks across the spring-forward change
// of 29 March 2026, with Default (2 days), Daily (7 days) and Weekly (4
// weeks) tags. Backups fire at the local slots, the first of each day is
// Daily and the first of each week (from Sunday) Weekly, points expire and
// their snapshots go. After a week the instance moves to a policy keeping
// Default points 1 day: the points already taken keep their 2 days.
func TestScheduleHourlyDST(t *testing.T) {
	start := time.Date(2026, 3, 25, 10, 30, 0, 0, time.UTC)
	e := newEnv(t, start)
	s := e.standard(true)
	p := mustBuild(t, dataprotection.DiskPolicyOptions{Hours: 4, Time: "02:00", TimeZone: "W. Europe Standard Time",
		Retention: "2d", DailyRetention: "7d", WeeklyRetention: "4w"})
	pol := e.policy(s.vault, "Every4h", p)
	e.protect(s.bi, biJSON(s.disk, "local", pol, s.snapRG.String()))
	tl := newTimeline(e, s.bi, "W. Europe Standard Time")
	tl.note("protected with Every4h (PT4H from 02:00, Default 2d, Daily 7d, Weekly 4w)")
	tl.run(start.Add(7 * 24 * time.Hour))

	p2 := mustBuild(t, dataprotection.DiskPolicyOptions{Hours: 4, Time: "02:00", TimeZone: "W. Europe Standard Time",
		Retention: "1d", DailyRetention: "7d", WeeklyRetention: "4w"})
	pol2 := e.policy(s.vault, "Every4hShort", p2)
	e.protect(s.bi, biJSON(s.disk, "local", pol2, s.snapRG.String()))
	tl.note("policy changed to Every4hShort (Default 1d)")
	tl.run(start.Add(18 * 24 * time.Hour))
	if e.disks.maxRunning > 1 {
		t.Fatalf("%d backups of one disk ran at once", e.disks.maxRunning)
	}
	golden(t, "hourly_dst", tl.b.String())
}

// TestScheduleDailyStopSuspend: a daily policy at 23:30 in Pacific Standard
// Time across the change of 8 March 2026, Default 5 days and Weekly 3
// weeks; protection stopped (points kept, none expire), resumed (expired
// points cleaned up at once), suspended (points expire as their policy
// said, except the latest) and resumed again.
func TestScheduleDailyStopSuspend(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := newEnv(t, start)
	s := e.standard(true)
	pol := e.policy(s.vault, "Nightly", mustBuild(t, dataprotection.DiskPolicyOptions{Time: "23:30", TimeZone: "Pacific Standard Time",
		Retention: "5d", WeeklyRetention: "3w"}))
	e.protect(s.bi, biJSON(s.disk, "local", pol, s.snapRG.String()))
	tl := newTimeline(e, s.bi, "Pacific Standard Time")
	tl.note("protected with Nightly (P1D at 23:30, Default 5d, Weekly 3w)")
	step := func(days int, action dataprotection.ProtectionChange) {
		tl.run(start.Add(time.Duration(days) * 24 * time.Hour))
		if _, err := e.svc.SetProtection(e.ctx, s.bi, action, dataprotection.ChangeNote{}); err != nil {
			t.Fatal(err)
		}
		tl.note("%s", action)
		tl.diff()
	}
	step(10, dataprotection.StopProtection)
	step(20, dataprotection.ResumeProtection)
	step(24, dataprotection.SuspendBackups)
	step(36, dataprotection.ResumeBackups)
	tl.run(start.Add(40 * 24 * time.Hour))
	golden(t, "daily_stop_suspend", tl.b.String())
}

// TestScheduleCapAndOverlap: an hourly policy keeping the most the 450
// cap allows (P18DT18H) never holds more than 450 points, reaches the cap
// and stays at it; a scheduled slot that comes while a backup of the disk
// is queued is skipped, not run twice; re-firing a slot is harmless.
func TestScheduleCapAndOverlap(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)
	e := newEnv(t, start)
	s := e.standard(true)
	max, _ := schedule.MaxRetention(time.Hour)
	pol := e.policy(s.vault, "Hourly", mustBuild(t, dataprotection.DiskPolicyOptions{Hours: 1, Retention: fmt.Sprintf("P%dDT%dH", int(max.Hours())/24, int(max.Hours())%24)}))
	e.protect(s.bi, biJSON(s.disk, "local", pol, s.snapRG.String()))
	tl := newTimeline(e, s.bi, "UTC")
	tl.run(start.Add(21 * 24 * time.Hour))
	if tl.max != schedule.MaxBackups || len(tl.seen) != schedule.MaxBackups {
		t.Fatalf("at most %d points held, %d now; want %d", tl.max, len(tl.seen), schedule.MaxBackups)
	}
	// An on-demand backup is queued when the next slot comes.
	if _, err := e.backupNow(s.bi, "BackupIntervals", "Default"); err != nil {
		t.Fatal(err)
	}
	next, _, err := e.sched.Tick(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Set(next)
	_, fired, err := e.sched.Tick(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fired.Backups) != 0 || len(fired.Skipped) != 1 {
		t.Fatalf("slot during a queued backup: %+v", fired)
	}
	e.drain()
	if _, fired, _ = e.sched.Tick(e.ctx); len(fired.Backups) != 0 {
		t.Fatalf("a skipped slot fired later: %+v", fired)
	}
	if e.disks.maxRunning > 1 {
		t.Fatalf("%d backups of one disk ran at once", e.disks.maxRunning)
	}
}

// TestPlanBackup checks the pure next-due computation.
func TestPlanBackup(t *testing.T) {
	sc, err := schedule.New("R/2020-01-01T02:00:00+00:00/PT4H", "UTC")
	if err != nil {
		t.Fatal(err)
	}
	at := func(h, m int) time.Time { return time.Date(2026, 5, 4, h, m, 0, 0, time.UTC) }
	cases := []struct {
		last, now time.Time
		due, next time.Time
	}{
		{at(3, 0), at(5, 0), time.Time{}, at(6, 0)},
		{at(3, 0), at(6, 0), at(6, 0), at(10, 0)},
		{at(3, 0), at(15, 0), at(14, 0), at(18, 0)},  // missed slots: only the latest runs
		{at(6, 0), at(6, 0), time.Time{}, at(10, 0)}, // fired already
	}
	for i, c := range cases {
		got := dataprotection.PlanBackup(sc, c.last, c.now)
		if !got.Due.Equal(c.due) || !got.Next.Equal(c.next) {
			t.Errorf("case %d: got due %v next %v, want %v %v", i, got.Due, got.Next, c.due, c.next)
		}
	}
}

package schedule

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func TestMaxRetention(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		every   time.Duration
		want    time.Duration
		byCount bool
	}{
		{time.Hour, 18*day + 18*time.Hour, true},
		{2 * time.Hour, 37*day + 12*time.Hour, true},
		{4 * time.Hour, 75 * day, true},
		{6 * time.Hour, 112*day + 12*time.Hour, true},
		{8 * time.Hour, 150 * day, true},
		{12 * time.Hour, 225 * day, true},
		{24 * time.Hour, 365 * day, false},
	}
	for _, tt := range tests {
		got, byCount := MaxRetention(tt.every)
		if got != tt.want || byCount != tt.byCount {
			t.Errorf("MaxRetention(%v) = %v, %v; want %v, %v", tt.every, got, byCount, tt.want, tt.byCount)
		}
	}
}

func TestCheckRetention(t *testing.T) {
	tests := []struct {
		d     string
		every time.Duration
		msg   string // "" = valid
	}{
		{"P225D", 12 * time.Hour, ""},
		{"P32W", 12 * time.Hour, ""},
		{"P7M", 12 * time.Hour, ""},
		{"P226D", 12 * time.Hour, "retention P226D exceeds the maximum of 225 days (P225D) for backups every 12 hours (450 backups)"},
		{"P300D", 12 * time.Hour, "retention P300D exceeds the maximum of 225 days (P225D) for backups every 12 hours (450 backups)"},
		{"P75D", 4 * time.Hour, ""},
		{"P11W", 4 * time.Hour, "retention P11W exceeds the maximum of 75 days (P75D) for backups every 4 hours (450 backups)"},
		{"P18D", time.Hour, ""},
		{"PT450H", time.Hour, ""},
		{"P19D", time.Hour, "retention P19D exceeds the maximum of 18.75 days (P18DT18H) for backups every hour (450 backups)"},
		{"P1Y", 24 * time.Hour, ""},
		{"P12M", 24 * time.Hour, ""},
		{"P365D", 24 * time.Hour, ""},
		{"P52W", 24 * time.Hour, ""},
		{"P366D", 24 * time.Hour, "retention P366D exceeds the maximum of 1 year (P1Y, 365 days)"},
		{"P1Y1D", 24 * time.Hour, "retention P1Y1D exceeds the maximum of 1 year (P1Y, 365 days)"},
		{"P0D", 24 * time.Hour, "not positive"},
	}
	for _, tt := range tests {
		err := CheckRetention(MustParseDuration(tt.d), tt.every)
		switch {
		case tt.msg == "" && err != nil:
			t.Errorf("CheckRetention(%s, %v) = %v, want nil", tt.d, tt.every, err)
		case tt.msg != "" && (err == nil || !strings.Contains(err.Error(), tt.msg)):
			t.Errorf("CheckRetention(%s, %v) = %v, want %q", tt.d, tt.every, err, tt.msg)
		case tt.msg != "" && !strings.Contains(tt.msg, "positive") && !errors.Is(err, ErrRetentionExceeded):
			t.Errorf("CheckRetention(%s, %v) = %v, not ErrRetentionExceeded", tt.d, tt.every, err)
		}
	}
}

func diskRules(def, daily, weekly string) []TagRule {
	rules := []TagRule{{Name: "Default", Default: true, Priority: 99, Retention: MustParseDuration(def)}}
	if daily != "" {
		rules = append(rules, TagRule{Name: "Daily", Criterion: FirstOfDay, Priority: 25, Retention: MustParseDuration(daily)})
	}
	if weekly != "" {
		rules = append(rules, TagRule{Name: "Weekly", Criterion: FirstOfWeek, Priority: 20, Retention: MustParseDuration(weekly)})
	}
	return rules
}

func TestDecide(t *testing.T) {
	pst := mustLoad(t, "Pacific Standard Time")
	r := Retention{Location: pst, Rules: diskRules("P7D", "P30D", "P12W")}
	sat := time.Date(2024, 1, 13, 22, 0, 0, 0, pst) // Saturday
	sun := time.Date(2024, 1, 14, 2, 0, 0, 0, pst)  // Sunday
	mon := time.Date(2024, 1, 15, 2, 0, 0, 0, pst)
	tests := []struct {
		name    string
		rules   []TagRule
		at      time.Time
		earlier []time.Time
		want    string
	}{
		{"first ever is weekly", r.Rules, sun, nil, "Weekly"},
		{"first of Sunday starts a week", r.Rules, sun, []time.Time{sat}, "Weekly"},
		{"first of Monday is daily", r.Rules, mon, []time.Time{sat, sun}, "Daily"},
		{"second of day is default", r.Rules, mon.Add(4 * time.Hour), []time.Time{sun, mon}, "Default"},
		{"later times are ignored", r.Rules, mon, []time.Time{sun, mon, mon.Add(time.Hour)}, "Daily"},
		{"day is in the policy zone", r.Rules, time.Date(2024, 1, 15, 7, 0, 0, 0, time.UTC), []time.Time{time.Date(2024, 1, 14, 23, 0, 0, 0, time.UTC)}, "Default"},
		{"daily wins with lower priority", []TagRule{
			{Name: "Default", Default: true, Priority: 99, Retention: MustParseDuration("P7D")},
			{Name: "Daily", Criterion: FirstOfDay, Priority: 10, Retention: MustParseDuration("P30D")},
			{Name: "Weekly", Criterion: FirstOfWeek, Priority: 20, Retention: MustParseDuration("P12W")},
		}, sun, nil, "Daily"},
		{"no daily rule: first of day is default", diskRules("P7D", "", "P12W"), mon, []time.Time{sun}, "Default"},
	}
	for _, tt := range tests {
		got, err := Retention{Location: pst, Rules: tt.rules}.Decide(tt.at, tt.earlier)
		if err != nil || got.Rule.Name != tt.want {
			t.Errorf("%s: Decide = %+v, %v; want %s", tt.name, got.Rule, err, tt.want)
		}
	}
	if _, err := (Retention{Rules: diskRules("P7D", "P30D", "")[1:]}).Decide(mon, []time.Time{mon.Add(-time.Hour)}); err == nil {
		t.Error("Decide without a default tag succeeded")
	}
	d, _ := r.Decide(sun, nil)
	if want := time.Date(2024, 4, 7, 2, 0, 0, 0, pst); !d.Expiry.Equal(want) {
		t.Errorf("weekly expiry = %v, want %v (12 weeks, wall clock kept across DST)", d.Expiry, want)
	}
}

// timeline simulates a policy: every scheduled backup in [from, to) succeeds
// took after its start, except those whose start (Unix seconds) is in
// failed, and prints
// one line per backup with its tag and expiry.
func timeline(t *testing.T, interval, tz string, rules []TagRule, from, to time.Time, took time.Duration, failed map[int64]bool) string {
	t.Helper()
	s := mustNew(t, interval, tz)
	r := Retention{Location: s.Location(), Rules: rules}
	var b strings.Builder
	fmt.Fprintf(&b, "# schedule %s in %q (%s); backups take %v\n", interval, tz, s.Location(), took)
	for _, rule := range rules {
		fmt.Fprintf(&b, "# tag %-7s criterion %-11s priority %2d retention %s\n", rule.Name, cmp(string(rule.Criterion), "-"), rule.Priority, rule.Retention)
	}
	b.WriteString("# start (local)             done (UTC)             tag      expiry (local)            expiry (UTC)\n")
	const local = "2006-01-02 Mon 15:04 MST"
	var done []time.Time
	for _, start := range s.Times(from.Add(-time.Nanosecond), to.Add(-time.Nanosecond)) {
		if failed[start.Unix()] {
			fmt.Fprintf(&b, "%-27s FAILED\n", start.In(s.Location()).Format(local))
			continue
		}
		end := start.Add(took)
		d, err := r.Decide(end, done)
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, end)
		fmt.Fprintf(&b, "%-27s %-22s %-8s %-25s %s\n", start.In(s.Location()).Format(local), end.UTC().Format(time.RFC3339),
			d.Rule.Name, d.Expiry.In(s.Location()).Format(local), d.Expiry.UTC().Format(time.RFC3339))
	}
	return b.String()
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs at line %d:\n got: %s\nwant: %s\n(run go test -update to accept)", path, i+1, g, w)
			}
		}
	}
}

func TestTimelineGolden(t *testing.T) {
	pst := mustLoad(t, "Pacific Standard Time")
	berlin := mustLoad(t, "W. Europe Standard Time")
	t.Run("4hourly_pst_spring_forward", func(t *testing.T) {
		// six weeks around 2024-03-10 (02:00 PST -> 03:00 PDT); the 02:00
		// backup of Wednesday 2024-03-13 fails, so the 06:00 one is Daily.
		failed := map[int64]bool{time.Date(2024, 3, 13, 2, 0, 0, 0, pst).Unix(): true}
		golden(t, "4hourly_pst_spring_forward", timeline(t, "R/2024-02-20T02:00:00-08:00/PT4H", "Pacific Standard Time",
			diskRules("P7D", "P30D", "P12W"),
			time.Date(2024, 2, 25, 0, 0, 0, 0, pst), time.Date(2024, 4, 7, 0, 0, 0, 0, pst), 7*time.Minute, failed))
	})
	t.Run("hourly_pst_fall_back", func(t *testing.T) {
		golden(t, "hourly_pst_fall_back", timeline(t, "R/2024-10-01T00:00:00+00:00/PT1H", "Pacific Standard Time",
			diskRules("P2D", "P7D", ""),
			time.Date(2024, 11, 2, 22, 0, 0, 0, pst), time.Date(2024, 11, 3, 5, 0, 0, 0, pst), 3*time.Minute, nil))
	})
	t.Run("daily_berlin_0230", func(t *testing.T) {
		// 2024-03-31 02:30 does not exist in Berlin; 2024-10-27 02:30 happens twice
		out := timeline(t, "R/2024-01-01T02:30:00+01:00/P1D", "W. Europe Standard Time",
			diskRules("P30D", "", "P1Y"),
			time.Date(2024, 3, 28, 0, 0, 0, 0, berlin), time.Date(2024, 4, 3, 0, 0, 0, 0, berlin), 20*time.Minute, nil)
		out += timeline(t, "R/2024-01-01T02:30:00+01:00/P1D", "W. Europe Standard Time",
			diskRules("P30D", "", "P1Y"),
			time.Date(2024, 10, 25, 0, 0, 0, 0, berlin), time.Date(2024, 10, 30, 0, 0, 0, 0, berlin), 20*time.Minute, nil)
		golden(t, "daily_berlin_0230", out)
	})
}

package schedule

import (
	"testing"
	"time"
)

func mustNew(t testing.TB, interval, tz string) *Schedule {
	t.Helper()
	s, err := New(interval, tz)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTimesOfDay(t *testing.T) {
	tests := []struct {
		interval string
		want     []string
	}{
		{"R/2020-04-05T02:00:00+00:00/PT4H", []string{"2h0m0s", "6h0m0s", "10h0m0s", "14h0m0s", "18h0m0s", "22h0m0s"}},
		{"R/2020-04-05T13:00:00+00:00/PT4H", []string{"1h0m0s", "5h0m0s", "9h0m0s", "13h0m0s", "17h0m0s", "21h0m0s"}},
		{"R/2020-04-05T13:30:00+00:00/PT12H", []string{"1h30m0s", "13h30m0s"}},
		{"R/2020-04-05T23:15:00+00:00/P1D", []string{"23h15m0s"}},
	}
	for _, tt := range tests {
		got := mustNew(t, tt.interval, "UTC").TimesOfDay()
		if len(got) != len(tt.want) {
			t.Errorf("%s: TimesOfDay() = %v, want %v", tt.interval, got, tt.want)
			continue
		}
		for i := range got {
			if got[i].String() != tt.want[i] {
				t.Errorf("%s: TimesOfDay() = %v, want %v", tt.interval, got, tt.want)
				break
			}
		}
	}
	if n := len(mustNew(t, "R/2020-04-05T00:00:00+00:00/PT1H", "UTC").TimesOfDay()); n != 24 {
		t.Errorf("hourly: %d slots, want 24", n)
	}
}

func TestNext(t *testing.T) {
	pst := mustLoad(t, "Pacific Standard Time")
	ist := mustLoad(t, "India Standard Time")
	utc := time.UTC
	at := func(loc *time.Location, y int, mo time.Month, d, h, mi int) time.Time {
		return time.Date(y, mo, d, h, mi, 0, 0, loc)
	}
	tests := []struct {
		name     string
		interval string
		tz       string
		after    time.Time
		want     time.Time
	}{
		{"4-hourly next slot", "R/2020-04-05T02:00:00+00:00/PT4H", "Pacific Standard Time", at(pst, 2024, 1, 10, 7, 0), at(pst, 2024, 1, 10, 10, 0)},
		{"strictly after", "R/2020-04-05T02:00:00+00:00/PT4H", "Pacific Standard Time", at(pst, 2024, 1, 10, 10, 0), at(pst, 2024, 1, 10, 14, 0)},
		{"wraps to next day", "R/2020-04-05T02:00:00+00:00/PT4H", "Pacific Standard Time", at(pst, 2024, 1, 10, 22, 0), at(pst, 2024, 1, 11, 2, 0)},
		{"offset ignored with time zone", "R/2020-04-05T02:00:00+05:00/PT4H", "Pacific Standard Time", at(pst, 2024, 1, 10, 7, 0), at(pst, 2024, 1, 10, 10, 0)},
		{"no time zone: written offset", "R/2020-04-05T13:00:00+05:30/P1D", "", at(utc, 2024, 1, 10, 0, 0), at(utc, 2024, 1, 10, 7, 30)},
		{"India daily", "R/2020-04-05T13:00:00+00:00/P1D", "India Standard Time", at(utc, 2024, 1, 10, 8, 0), at(ist, 2024, 1, 11, 13, 0)},
		{"before anchor returns anchor", "R/2030-01-01T05:00:00+00:00/PT4H", "UTC", at(utc, 2024, 1, 1, 0, 0), at(utc, 2030, 1, 1, 5, 0)},
		{"anchor excludes earlier slots that day", "R/2030-01-01T05:00:00+00:00/PT4H", "UTC", at(utc, 2030, 1, 1, 5, 0), at(utc, 2030, 1, 1, 9, 0)},
		// spring forward: 2024-03-10 02:00 PST -> 03:00 PDT
		{"daily 02:00 in gap runs 03:00 PDT", "R/2020-04-05T02:00:00+00:00/P1D", "Pacific Standard Time", at(pst, 2024, 3, 9, 3, 0), time.Date(2024, 3, 10, 10, 0, 0, 0, utc)},
		{"daily 02:00 back to 02:00 PDT next day", "R/2020-04-05T02:00:00+00:00/P1D", "Pacific Standard Time", time.Date(2024, 3, 10, 10, 0, 0, 0, utc), at(pst, 2024, 3, 11, 2, 0)},
		{"daily 09:00 keeps wall clock", "R/2020-04-05T09:00:00+00:00/P1D", "Pacific Standard Time", at(pst, 2024, 3, 9, 10, 0), time.Date(2024, 3, 10, 16, 0, 0, 0, utc)},
		{"hourly gap slot merges with 03:00", "R/2020-04-05T00:00:00+00:00/PT1H", "Pacific Standard Time", at(pst, 2024, 3, 10, 1, 0), time.Date(2024, 3, 10, 10, 0, 0, 0, utc)},
		{"hourly after 03:00 PDT", "R/2020-04-05T00:00:00+00:00/PT1H", "Pacific Standard Time", time.Date(2024, 3, 10, 10, 0, 0, 0, utc), time.Date(2024, 3, 10, 11, 0, 0, 0, utc)},
		// fall back: 2024-11-03 01:00-02:00 twice (08:00Z PDT, 09:00Z PST)
		{"daily 01:30 runs at first occurrence", "R/2020-04-05T01:30:00+00:00/P1D", "Pacific Standard Time", at(pst, 2024, 11, 2, 12, 0), time.Date(2024, 11, 3, 8, 30, 0, 0, utc)},
		{"not again at second occurrence", "R/2020-04-05T01:30:00+00:00/P1D", "Pacific Standard Time", time.Date(2024, 11, 3, 8, 30, 0, 0, utc), at(pst, 2024, 11, 4, 1, 30)},
		{"hourly 01:00 once then 02:00 PST", "R/2020-04-05T00:00:00+00:00/PT1H", "Pacific Standard Time", time.Date(2024, 11, 3, 8, 0, 0, 0, utc), time.Date(2024, 11, 3, 10, 0, 0, 0, utc)},
	}
	for _, tt := range tests {
		s := mustNew(t, tt.interval, tt.tz)
		got := s.Next(tt.after)
		if !got.Equal(tt.want) {
			t.Errorf("%s: Next(%v) = %v, want %v", tt.name, tt.after, got.In(s.Location()), tt.want.In(s.Location()))
		}
	}
}

func TestNextInvariants(t *testing.T) {
	for _, tz := range []string{"UTC", "Pacific Standard Time", "Lord Howe Standard Time", "Samoa Standard Time", "Chatham Islands Standard Time", "Morocco Standard Time"} {
		for _, p := range []string{"PT1H", "PT2H", "PT4H", "PT6H", "PT8H", "PT12H", "P1D"} {
			s := mustNew(t, "R/2011-01-01T02:30:00+00:00/"+p, tz)
			at := time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC)
			end := at.AddDate(1, 0, 0)
			per := s.Interval().Every
			for at.Before(end) {
				next := s.Next(at)
				if !next.After(at) {
					t.Fatalf("%s %s: Next(%v) = %v", tz, p, at, next)
				}
				if gap := next.Sub(at); at.After(s.Anchor()) && gap > per+2*time.Hour+30*time.Minute && !(tz == "Samoa Standard Time" && at.Year() == 2011 && at.Month() == 12) {
					t.Fatalf("%s %s: gap %v after %v", tz, p, gap, at.In(s.Location()))
				}
				at = next
			}
		}
	}
}

func TestTimes(t *testing.T) {
	s := mustNew(t, "R/2020-04-05T02:00:00+00:00/PT4H", "UTC")
	from := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	got := s.Times(from, from.Add(24*time.Hour))
	if len(got) != 6 {
		t.Fatalf("Times over a day = %v, want 6", got)
	}
	if got[0].Hour() != 2 || got[5].Hour() != 22 {
		t.Errorf("Times = %v", got)
	}
}

func BenchmarkNext(b *testing.B) {
	s := mustNew(b, "R/2020-04-05T02:00:00+00:00/PT1H", "Pacific Standard Time")
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		at = s.Next(at)
	}
}

package schedule

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseInterval(t *testing.T) {
	tests := []struct {
		in    string
		start string // RFC 3339
		every time.Duration
		reps  int
		str   string // "" means in
	}{
		{in: "R/2020-04-05T13:00:00+00:00/PT4H", start: "2020-04-05T13:00:00Z", every: 4 * time.Hour, reps: -1},
		{in: "R/2021-05-21T10:00:00+00:00/P1D", start: "2021-05-21T10:00:00Z", every: 24 * time.Hour, reps: -1},
		{in: "R/2026-09-22T02:00:00+01:00/P1D", start: "2026-09-22T02:00:00+01:00", every: 24 * time.Hour, reps: -1},
		{in: "R5/2020-04-05T13:00:00+05:30/PT12H", start: "2020-04-05T13:00:00+05:30", every: 12 * time.Hour, reps: 5},
		{in: "R/2020-04-05T13:00:00Z/PT1H", start: "2020-04-05T13:00:00Z", every: time.Hour, reps: -1, str: "R/2020-04-05T13:00:00+00:00/PT1H"},
		{in: "R/2020-04-05T13:00:00.5-08:00/PT2H", start: "2020-04-05T13:00:00.5-08:00", every: 2 * time.Hour, reps: -1},
		{in: "R/2020-04-05t13:00:00z/pt6h", start: "2020-04-05T13:00:00Z", every: 6 * time.Hour, reps: -1, str: "R/2020-04-05T13:00:00+00:00/PT6H"},
		{in: "R/2020-04-05T13:00:00+00:00/PT8H", start: "2020-04-05T13:00:00Z", every: 8 * time.Hour, reps: -1},
	}
	for _, tt := range tests {
		iv, err := ParseInterval(tt.in)
		if err != nil {
			t.Errorf("ParseInterval(%q): %v", tt.in, err)
			continue
		}
		start, _ := time.Parse(time.RFC3339Nano, tt.start)
		if !iv.Start.Equal(start) || iv.Every != tt.every || iv.Repetitions != tt.reps {
			t.Errorf("ParseInterval(%q) = %+v, want start %v every %v reps %d", tt.in, iv, start, tt.every, tt.reps)
		}
		_, off := iv.Start.Zone()
		_, wantOff := start.Zone()
		if off != wantOff {
			t.Errorf("ParseInterval(%q) offset %d, want %d", tt.in, off, wantOff)
		}
		want := tt.str
		if want == "" {
			want = tt.in
		}
		if iv.String() != want {
			t.Errorf("ParseInterval(%q).String() = %q, want %q", tt.in, iv.String(), want)
		}
	}
}

func TestParseIntervalErrors(t *testing.T) {
	tests := []struct {
		in       string
		sentinel error
		msg      string
	}{
		{"R/T13:00:00+00:00/PT4H", ErrInvalidInterval, "full date-time"},
		{"R/13:00:00+00:00/PT4H", ErrInvalidInterval, "full date-time"},
		{"R/2020-04-05/PT4H", ErrInvalidInterval, "without a time"},
		{"R/2020-04-05T13:00:00/PT4H", ErrInvalidInterval, "no UTC offset"},
		{"R/2020-04-05T25:00:00+00:00/PT4H", ErrInvalidInterval, "not a date-time"},
		{"2020-04-05T13:00:00+00:00/PT4H", ErrInvalidInterval, "R/<start"},
		{"X/2020-04-05T13:00:00+00:00/PT4H", ErrInvalidInterval, "must start with R"},
		{"R-1/2020-04-05T13:00:00+00:00/PT4H", ErrInvalidInterval, "repetition count"},
		{"Rx/2020-04-05T13:00:00+00:00/PT4H", ErrInvalidInterval, "repetition count"},
		{"R/PT4H/2020-04-05T13:00:00+00:00", ErrInvalidInterval, "period must come last"},
		{"R//PT4H", ErrInvalidInterval, "missing"},
		{"R/2020-04-05T13:00:00+00:00/", ErrInvalidInterval, "period"},
		{"R/2020-04-05T13:00:00+00:00/4H", ErrInvalidInterval, "period"},
		{"R/2020-04-05T13:00:00+00:00/PT3H", ErrUnsupportedFrequency, "every 3 hours"},
		{"R/2020-04-05T13:00:00+00:00/PT24H", ErrUnsupportedFrequency, "P1D"},
		{"R/2020-04-05T13:00:00+00:00/P1W", ErrUnsupportedFrequency, "weekly"},
		{"R/2020-04-05T13:00:00+00:00/P7D", ErrUnsupportedFrequency, "weekly"},
		{"R/2020-04-05T13:00:00+00:00/P2D", ErrUnsupportedFrequency, "P2D"},
		{"R/2020-04-05T13:00:00+00:00/PT30M", ErrUnsupportedFrequency, "PT30M"},
		{"R/2020-04-05T13:00:00+00:00/PT4H/x", ErrInvalidInterval, "R/<start"},
		{"", ErrInvalidInterval, "R/<start"},
	}
	for _, tt := range tests {
		_, err := ParseInterval(tt.in)
		if !errors.Is(err, tt.sentinel) {
			t.Errorf("ParseInterval(%q) error = %v, want %v", tt.in, err, tt.sentinel)
			continue
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseInterval(%q) error %q does not mention %q", tt.in, err, tt.msg)
		}
	}
}

func FuzzParseInterval(f *testing.F) {
	for _, s := range []string{
		"R/2020-04-05T13:00:00+00:00/PT4H", "R5/2020-04-05T13:00:00Z/P1D", "R/T13:00:00/PT4H",
		"R/2020-04-05T13:00:00+14:00/PT1H", "R//", "R/2020-04-05T13:00:00-12:00/P1W",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		iv, err := ParseInterval(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidInterval) && !errors.Is(err, ErrUnsupportedFrequency) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		back, err := ParseInterval(iv.String())
		if err != nil || !back.Start.Equal(iv.Start) || back.Every != iv.Every || back.Repetitions != iv.Repetitions {
			t.Fatalf("round trip %q -> %q -> %+v, %v", s, iv.String(), back, err)
		}
		sc := NewInLocation(iv, time.UTC, "")
		at := iv.Start
		for range 3 {
			next := sc.Next(at)
			if !next.After(at) {
				t.Fatalf("Next(%v) = %v, not after", at, next)
			}
			at = next
		}
	})
}

package schedule

import (
	"errors"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want Duration
		str  string // canonical String(); "" means in
	}{
		{in: "P7D", want: Duration{Days: 7}},
		{in: "P30D", want: Duration{Days: 30}},
		{in: "P12W", want: Duration{Weeks: 12}},
		{in: "P1Y", want: Duration{Years: 1}},
		{in: "P6M", want: Duration{Months: 6}},
		{in: "PT4H", want: Duration{Hours: 4}},
		{in: "PT30M", want: Duration{Minutes: 30}},
		{in: "PT45S", want: Duration{Seconds: 45}},
		{in: "P1Y2M3W4DT5H6M7S", want: Duration{1, 2, 3, 4, 5, 6, 7}},
		{in: "p1y2m3dt4h", want: Duration{Years: 1, Months: 2, Days: 3, Hours: 4}, str: "P1Y2M3DT4H"},
		{in: "P0D", want: Duration{}},
		{in: "PT0S", want: Duration{}, str: "P0D"},
		{in: "P007D", want: Duration{Days: 7}, str: "P7D"},
		{in: "P999999D", want: Duration{Days: 999999}},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if err != nil {
			t.Errorf("ParseDuration(%q) error: %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseDuration(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		want := tt.str
		if want == "" {
			want = tt.in
		}
		if got.String() != want {
			t.Errorf("ParseDuration(%q).String() = %q, want %q", tt.in, got.String(), want)
		}
	}
}

func TestParseDurationErrors(t *testing.T) {
	for _, in := range []string{
		"", "P", "PT", "7D", "P7", "PD", "P1.5D", "P1,5D", "-P1D", "P-1D", "P+1D",
		"P1H", "PT1D", "P1D1Y", "P1DT", "P1Y1Y", "PT1H1H", "P1DT1HT1M", "P1000000D",
		"P99999999999999999999D", "P1X", "R/P1D", " P1D", "P1D ",
	} {
		_, err := ParseDuration(in)
		if err == nil {
			t.Errorf("ParseDuration(%q) succeeded, want error", in)
			continue
		}
		if !errors.Is(err, ErrInvalidDuration) {
			t.Errorf("ParseDuration(%q) error %v does not wrap ErrInvalidDuration", in, err)
		}
	}
}

func TestParseRetention(t *testing.T) {
	tests := []struct {
		in   string
		want Duration
	}{
		{"7d", Duration{Days: 7}},
		{"30D", Duration{Days: 30}},
		{"12w", Duration{Weeks: 12}},
		{"6m", Duration{Months: 6}},
		{"1y", Duration{Years: 1}},
		{"4h", Duration{Hours: 4}},
		{"P30D", Duration{Days: 30}},
	}
	for _, tt := range tests {
		got, err := ParseRetention(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseRetention(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "d", "7", "7x", "-7d", "+7d", "7.5d", "P7"} {
		if _, err := ParseRetention(in); !errors.Is(err, ErrInvalidDuration) {
			t.Errorf("ParseRetention(%q) error = %v, want ErrInvalidDuration", in, err)
		}
	}
}

func TestNominal(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"P1Y", 365 * day},
		{"P12M", 365 * day},
		{"P365D", 365 * day},
		{"P52W", 364 * day},
		{"P225D", 225 * day},
		{"PT450H", 450 * time.Hour},
	}
	for _, tt := range tests {
		if got := MustParseDuration(tt.in).Nominal(); got != tt.want {
			t.Errorf("%s.Nominal() = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestDurationAddTo(t *testing.T) {
	pst := mustLoad(t, "Pacific Standard Time")
	utc := time.UTC
	tests := []struct {
		name string
		from time.Time
		d    string
		loc  *time.Location
		want time.Time
	}{
		{"days", time.Date(2024, 1, 1, 10, 0, 0, 0, utc), "P7D", utc, time.Date(2024, 1, 8, 10, 0, 0, 0, utc)},
		{"month clamps to Feb 29", time.Date(2024, 1, 31, 10, 0, 0, 0, utc), "P1M", utc, time.Date(2024, 2, 29, 10, 0, 0, 0, utc)},
		{"month clamps to Apr 30", time.Date(2023, 3, 31, 0, 0, 0, 0, utc), "P1M", utc, time.Date(2023, 4, 30, 0, 0, 0, 0, utc)},
		{"year from Feb 29 clamps", time.Date(2024, 2, 29, 12, 0, 0, 0, utc), "P1Y", utc, time.Date(2025, 2, 28, 12, 0, 0, 0, utc)},
		{"13 months", time.Date(2024, 12, 15, 0, 0, 0, 0, utc), "P13M", utc, time.Date(2026, 1, 15, 0, 0, 0, 0, utc)},
		{"weeks", time.Date(2024, 1, 1, 0, 0, 0, 0, utc), "P12W", utc, time.Date(2024, 3, 25, 0, 0, 0, 0, utc)},
		{"month then days", time.Date(2024, 1, 31, 0, 0, 0, 0, utc), "P1M1D", utc, time.Date(2024, 3, 1, 0, 0, 0, 0, utc)},
		// 2024-03-10 02:00 PST -> 03:00 PDT
		{"days keep wall clock across spring forward", time.Date(2024, 3, 9, 10, 0, 0, 0, pst), "P1D", pst, time.Date(2024, 3, 10, 10, 0, 0, 0, pst)},
		{"hours are elapsed across spring forward", time.Date(2024, 3, 9, 10, 0, 0, 0, pst), "PT24H", pst, time.Date(2024, 3, 10, 11, 0, 0, 0, pst)},
		{"day into the gap moves forward", time.Date(2024, 3, 9, 2, 30, 0, 0, pst), "P1D", pst, time.Date(2024, 3, 10, 10, 30, 0, 0, utc)},
		// 2024-11-03 01:00-02:00 happens twice; later = 01:30 PST = 09:30Z
		{"ambiguous resolves later", time.Date(2024, 11, 2, 1, 30, 0, 0, pst), "P1D", pst, time.Date(2024, 11, 3, 9, 30, 0, 0, utc)},
		{"nil loc uses t's zone", time.Date(2024, 3, 9, 10, 0, 0, 0, pst), "P1D", nil, time.Date(2024, 3, 10, 10, 0, 0, 0, pst)},
		{"zone differs from t", time.Date(2024, 1, 31, 23, 0, 0, 0, utc), "P1M", pst, time.Date(2024, 2, 29, 23, 0, 0, 0, utc)},
	}
	for _, tt := range tests {
		got := MustParseDuration(tt.d).AddTo(tt.from, tt.loc)
		if !got.Equal(tt.want) {
			t.Errorf("%s: %s.AddTo(%v) = %v, want %v", tt.name, tt.d, tt.from, got, tt.want)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"P7D", "P1Y2M3W4DT5H6M7S", "PT4H", "P", "PT", "P1.5D", "p1d", "P1DT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidDuration) {
				t.Fatalf("error %v does not wrap ErrInvalidDuration", err)
			}
			return
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("round trip %q -> %q -> %+v, %v", s, d.String(), back, err)
		}
		_ = d.AddTo(time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC), nil)
	})
}

package schedule

import (
	"errors"
	"testing"
	"time"
)

// FuzzParseRetention: a command-line retention (7d, 12w, P30D) either
// parses to a duration that formats back to itself, or is refused with
// ErrInvalidDuration.
func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"7d", "12W", "6m", "1y", "4h", "P30D", "p1y", "", "d", "+1d", "-1d", "99999999999d", "1x", "07d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseRetention(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidDuration) {
				t.Fatalf("ParseRetention(%q): %v does not wrap ErrInvalidDuration", s, err)
			}
			return
		}
		back, err := ParseRetention(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseRetention(%q) = %s, which parses as %+v, %v", s, d, back, err)
		}
	})
}

// FuzzLoadLocation: a policy's timeZone either names a zone, which loads
// again by its own name, or is refused with ErrUnknownTimeZone; "Local"
// and path tricks never reach the server's zone or files.
func FuzzLoadLocation(f *testing.F) {
	for _, s := range []string{"", "UTC", "Pacific Standard Time", "w. europe standard time", "Europe/Berlin", "Local", "local",
		"../../etc/passwd", "/etc/localtime", "Europe/../Europe/Berlin", "Etc/GMT+5", "\\", "America/Argentina/Buenos_Aires"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		loc, err := LoadLocation(name)
		if err != nil {
			if !errors.Is(err, ErrUnknownTimeZone) {
				t.Fatalf("LoadLocation(%q): %v does not wrap ErrUnknownTimeZone", name, err)
			}
			return
		}
		if loc == time.Local && name != "" {
			t.Fatalf("LoadLocation(%q) is the server's zone", name)
		}
		again, err := LoadLocation(loc.String())
		if err != nil {
			t.Fatalf("LoadLocation(%q) = %s, which does not load: %v", name, loc, err)
		}
		for _, at := range []time.Time{time.Date(2026, 1, 15, 12, 0, 0, 0, time.UTC), time.Date(2026, 7, 15, 12, 0, 0, 0, time.UTC)} {
			_, o1 := at.In(loc).Zone()
			_, o2 := at.In(again).Zone()
			if o1 != o2 {
				t.Fatalf("LoadLocation(%q) = %s (offset %d), which loads as %s (offset %d)", name, loc, o1, again, o2)
			}
		}
	})
}

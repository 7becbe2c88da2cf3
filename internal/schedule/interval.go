package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Errors wrapped by ParseInterval, so that callers can tell a malformed
// interval from a well-formed one with a frequency disks do not support.
var (
	// ErrInvalidInterval: the string is not "R[n]/<date-time with offset>/<period>".
	ErrInvalidInterval = errors.New("invalid repeating time interval")
	// ErrUnsupportedFrequency: the period is a valid duration but not one of
	// PT1H, PT2H, PT4H, PT6H, PT8H, PT12H or P1D (this includes weekly P1W).
	ErrUnsupportedFrequency = errors.New("unsupported backup frequency")
)

// HourlyIntervals are the hourly frequencies allowed for disk backups.
var HourlyIntervals = []int{1, 2, 4, 6, 8, 12}

// Interval is a parsed repeating time interval, "R/<start>/<period>".
type Interval struct {
	// Start is the date-time as written, in a fixed zone of its offset.
	Start time.Time
	// Repetitions is the count written after R, or -1 when there is none.
	// It is ignored: backups repeat indefinitely, as in Azure.
	Repetitions int
	// Every is the period: 1, 2, 4, 6, 8 or 12 hours, or 24 hours for P1D.
	Every time.Duration
}

// Daily reports whether the period is P1D.
func (iv Interval) Daily() bool { return iv.Every == 24*time.Hour }

// Period returns the ISO 8601 period: "PT4H" or "P1D".
func (iv Interval) Period() string {
	if iv.Daily() {
		return "P1D"
	}
	return "PT" + strconv.Itoa(int(iv.Every/time.Hour)) + "H"
}

// Frequency describes the period in words: "4-hourly", "hourly" or "daily".
func (iv Interval) Frequency() string {
	switch h := int(iv.Every / time.Hour); {
	case iv.Daily():
		return "daily"
	case h == 1:
		return "hourly"
	default:
		return strconv.Itoa(h) + "-hourly"
	}
}

// String formats iv as Azure writes it: "R/2020-04-05T13:00:00+00:00/PT4H".
func (iv Interval) String() string {
	r := "R"
	if iv.Repetitions >= 0 {
		r += strconv.Itoa(iv.Repetitions)
	}
	return r + "/" + iv.Start.Format("2006-01-02T15:04:05.999999999-07:00") + "/" + iv.Period()
}

// ParseInterval parses a repeating time interval of a disk backup schedule:
// "R/<date-time>/<period>" or "R<n>/<date-time>/<period>". The date-time must
// be a full RFC 3339 date and time with an offset (Z or ±hh:mm); the period
// must be PT1H, PT2H, PT4H, PT6H, PT8H, PT12H or P1D.
func ParseInterval(s string) (Interval, error) {
	fail := func(format string, args ...any) (Interval, error) {
		return Interval{}, fmt.Errorf("%w %q: %s", ErrInvalidInterval, s, fmt.Sprintf(format, args...))
	}
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return fail("must be R/<start date-time with offset>/<period>, as in R/2020-04-05T13:00:00+00:00/PT4H")
	}
	rep, start, period := parts[0], parts[1], parts[2]

	iv := Interval{Repetitions: -1}
	if rep == "" || (rep[0] != 'R' && rep[0] != 'r') {
		return fail("must start with R (or R<count>), as in R/2020-04-05T13:00:00+00:00/PT4H")
	}
	if len(rep) > 1 {
		n, err := strconv.Atoi(rep[1:])
		if err != nil || n < 0 || rep[1] == '+' {
			return fail("repetition count %q is not a non-negative number", rep[1:])
		}
		iv.Repetitions = n
	}

	if start == "" {
		return fail("the start date-time is missing")
	}
	if start[0] == 'P' || start[0] == 'p' {
		return fail("the start must be a date-time and the period must come last, as in R/2020-04-05T13:00:00+00:00/PT4H")
	}
	t, err := parseDateTime(start)
	if err != nil {
		return fail("%v", err)
	}
	iv.Start = t

	every, err := parsePeriod(period)
	if err != nil {
		return Interval{}, fmt.Errorf("repeating time interval %q: %w", s, err)
	}
	iv.Every = every
	return iv, nil
}

// parseDateTime parses a full RFC 3339 date-time with an offset and returns
// it in a fixed zone of that offset.
func parseDateTime(s string) (time.Time, error) {
	if s[0] == 'T' || s[0] == 't' || !strings.ContainsAny(s, "Tt") {
		if len(s) == 10 && !strings.ContainsAny(s, ":") {
			return time.Time{}, fmt.Errorf("start %q is a date without a time; a full date-time is required, as in 2020-04-05T13:00:00+00:00", s)
		}
		return time.Time{}, fmt.Errorf("start %q is not a full date-time; only a date and time with an offset is accepted, as in 2020-04-05T13:00:00+00:00", s)
	}
	t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
	if err != nil {
		if _, err2 := time.Parse("2006-01-02T15:04:05.999999999", strings.ToUpper(s)); err2 == nil {
			return time.Time{}, fmt.Errorf("start %q has no UTC offset; add one, as in %s+00:00", s, s)
		}
		return time.Time{}, fmt.Errorf("start %q is not a date-time with offset like 2020-04-05T13:00:00+00:00", s)
	}
	_, off := t.Zone()
	return t.In(time.FixedZone("", off)), nil
}

// parsePeriod parses and checks the period of a disk backup schedule.
func parsePeriod(s string) (time.Duration, error) {
	const allowed = "allowed: PT1H, PT2H, PT4H, PT6H, PT8H, PT12H (hourly) or P1D (daily)"
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: period: %w", ErrInvalidInterval, err)
	}
	switch {
	case d == Duration{Days: 1}:
		return 24 * time.Hour, nil
	case d == Duration{Hours: d.Hours}:
		for _, h := range HourlyIntervals {
			if d.Hours == h {
				return time.Duration(h) * time.Hour, nil
			}
		}
		if d.Hours == 24 {
			return 0, fmt.Errorf("%w: period PT24H: write a daily schedule as P1D", ErrUnsupportedFrequency)
		}
		return 0, fmt.Errorf("%w: every %d hours is not supported for disk backup (%s)", ErrUnsupportedFrequency, d.Hours, allowed)
	case d == Duration{Weeks: 1} || d == Duration{Days: 7}:
		return 0, fmt.Errorf("%w: weekly backup (%s) is not supported for disk backup (%s)", ErrUnsupportedFrequency, s, allowed)
	}
	return 0, fmt.Errorf("%w: period %s is not supported for disk backup (%s)", ErrUnsupportedFrequency, s, allowed)
}

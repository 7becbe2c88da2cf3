package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidDuration is wrapped by every error ParseDuration returns.
var ErrInvalidDuration = errors.New("invalid ISO 8601 duration")

// maxComponent bounds each number in a duration, so that arithmetic on
// durations cannot overflow; it is far beyond any retention Azure allows.
const maxComponent = 999_999

// Duration is an ISO 8601 duration with calendar components, such as P7D,
// P12W, P6M, P1Y or PT4H. The zero Duration is P0D.
type Duration struct {
	Years, Months, Weeks, Days int
	Hours, Minutes, Seconds    int
}

// Nominal lengths of calendar units, used only to compare durations with
// limits (MaxRetention): a year is 365 days and a month a twelfth of it, so
// P1Y, P12M and P365D are all exactly one year.
const (
	nominalDay   = 24 * time.Hour
	nominalYear  = 365 * nominalDay
	nominalMonth = nominalYear / 12
)

// ParseDuration parses an ISO 8601 duration P[nY][nM][nW][nD][T[nH][nM][nS]].
// Numbers are non-negative integers; designators may be in either case; weeks
// may be combined with other units (ISO 8601-1:2019). Fractions, signs and an
// empty duration ("P", "PT") are rejected.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	fail := func(format string, args ...any) (Duration, error) {
		return Duration{}, fmt.Errorf("%w %q: %s", ErrInvalidDuration, s, fmt.Sprintf(format, args...))
	}
	if s == "" || (s[0] != 'P' && s[0] != 'p') {
		return fail("must start with P, as in P7D, P12W, P1Y or PT4H")
	}
	rest := s[1:]
	inTime := false
	// order of designators allowed next, so that units appear once and in order
	const dateOrder, timeOrder = "YMWD", "HMS"
	pos := 0
	seen := false
	for len(rest) > 0 {
		if rest[0] == 'T' || rest[0] == 't' {
			if inTime {
				return fail("T appears twice")
			}
			inTime, pos = true, 0
			rest = rest[1:]
			if rest == "" {
				return fail("T must be followed by hours, minutes or seconds")
			}
			continue
		}
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return fail("expected a number at %q", rest)
		}
		if i == len(rest) {
			return fail("number %s has no unit designator", rest)
		}
		if c := rest[i]; c == '.' || c == ',' {
			return fail("fractional values are not supported")
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > maxComponent {
			return fail("number %s is too large (at most %d)", rest[:i], maxComponent)
		}
		unit := rest[i] &^ 0x20 // upper case
		order := dateOrder
		if inTime {
			order = timeOrder
		}
		k := strings.IndexByte(order[pos:], unit)
		if k < 0 {
			if strings.IndexByte(order, unit) >= 0 {
				return fail("unit %c is out of order or repeated", unit)
			}
			if inTime {
				return fail("unknown time unit %q (allowed: H, M, S after T)", rest[i])
			}
			return fail("unknown date unit %q (allowed: Y, M, W, D; put hours after T, as in PT4H)", rest[i])
		}
		pos += k + 1
		switch {
		case !inTime && unit == 'Y':
			d.Years = n
		case !inTime && unit == 'M':
			d.Months = n
		case unit == 'W':
			d.Weeks = n
		case unit == 'D':
			d.Days = n
		case unit == 'H':
			d.Hours = n
		case inTime && unit == 'M':
			d.Minutes = n
		case unit == 'S':
			d.Seconds = n
		}
		seen = true
		rest = rest[i+1:]
	}
	if !seen {
		return fail("no value, as in P7D")
	}
	return d, nil
}

// MustParseDuration is ParseDuration for constants; it panics on error.
func MustParseDuration(s string) Duration {
	d, err := ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// ParseRetention parses a retention given on a command line: either an ISO
// 8601 duration (P30D) or a number and a unit letter: 4h (hours), 7d (days),
// 12w (weeks), 6m (months), 1y (years).
func ParseRetention(s string) (Duration, error) {
	if s == "" {
		return Duration{}, fmt.Errorf("%w: empty retention (use e.g. 7d, 12w, 6m, 1y or P30D)", ErrInvalidDuration)
	}
	if s[0] == 'P' || s[0] == 'p' {
		return ParseDuration(s)
	}
	num, unit := s[:len(s)-1], s[len(s)-1]
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n > maxComponent || num[0] == '+' {
		return Duration{}, fmt.Errorf("%w %q: use a number and a unit, as in 7d, 12w, 6m, 1y, 4h, or an ISO 8601 duration such as P30D", ErrInvalidDuration, s)
	}
	switch unit | 0x20 {
	case 'h':
		return Duration{Hours: n}, nil
	case 'd':
		return Duration{Days: n}, nil
	case 'w':
		return Duration{Weeks: n}, nil
	case 'm':
		return Duration{Months: n}, nil
	case 'y':
		return Duration{Years: n}, nil
	}
	return Duration{}, fmt.Errorf("%w %q: unknown unit %q (allowed: h, d, w, m, y)", ErrInvalidDuration, s, unit)
}

// IsZero reports whether d is zero long.
func (d Duration) IsZero() bool { return d == Duration{} }

// String formats d in ISO 8601, omitting zero components ("P0D" when zero).
func (d Duration) String() string {
	if d.IsZero() {
		return "P0D"
	}
	var b strings.Builder
	b.WriteByte('P')
	put := func(n int, unit byte) {
		if n != 0 {
			b.WriteString(strconv.Itoa(n))
			b.WriteByte(unit)
		}
	}
	put(d.Years, 'Y')
	put(d.Months, 'M')
	put(d.Weeks, 'W')
	put(d.Days, 'D')
	if d.Hours != 0 || d.Minutes != 0 || d.Seconds != 0 {
		b.WriteByte('T')
		put(d.Hours, 'H')
		put(d.Minutes, 'M')
		put(d.Seconds, 'S')
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Nominal returns d's length with a year counted as 365 days, a month as a
// twelfth of that and a day as 24 hours. It is for comparing durations with
// limits, not for computing expiries (use AddTo).
func (d Duration) Nominal() time.Duration {
	return time.Duration(d.Years)*nominalYear +
		time.Duration(d.Months)*nominalMonth +
		time.Duration(d.Weeks)*7*nominalDay +
		time.Duration(d.Days)*nominalDay +
		time.Duration(d.Hours)*time.Hour +
		time.Duration(d.Minutes)*time.Minute +
		time.Duration(d.Seconds)*time.Second
}

// AddTo returns t plus d, with calendar arithmetic in loc (t's own location
// when loc is nil): years and months move the date keeping the day of month,
// clamped to the last day of the target month; weeks and days move the date
// keeping the wall-clock time; hours, minutes and seconds are then added as
// elapsed time. A resulting local time that does not exist moves forward by
// the length of the DST gap; one that happens twice resolves to its later
// occurrence (a backup never expires early).
func (d Duration) AddTo(t time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = t.Location()
	}
	lt := t.In(loc)
	y, m, day := lt.Date()
	hh, mm, ss := lt.Clock()
	ns := lt.Nanosecond()

	months := int(m) - 1 + d.Months + 12*d.Years
	y += months / 12
	m = time.Month(months%12 + 1)
	if last := daysIn(y, m); day > last {
		day = last
	}
	// calendar days: normalise through a UTC date, which has no DST
	date := time.Date(y, m, day+7*d.Weeks+d.Days, 0, 0, 0, 0, time.UTC)
	y, m, day = date.Date()

	at := resolveLocal(y, m, day, hh, mm, ss, ns, loc, true)
	return at.Add(time.Duration(d.Hours)*time.Hour +
		time.Duration(d.Minutes)*time.Minute +
		time.Duration(d.Seconds)*time.Second)
}

// daysIn returns the number of days of month m in year y.
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// resolveLocal returns the instant at which loc's wall clock shows the given
// date and time. When that local time does not exist (a DST gap) it returns
// the instant reached by reading the wall time with the offset in force
// before the gap, which is the wall time moved forward by the gap's length.
// When it exists twice it returns the later occurrence if later is true,
// else the earlier one.
func resolveLocal(y int, mo time.Month, d, h, mi, s, ns int, loc *time.Location, later bool) time.Time {
	wall := time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	// Offsets in force a day either side of the wall time cover every
	// offset that could apply to it (transitions are never a day apart).
	_, before := wall.Add(-nominalDay).In(loc).Zone()
	_, after := wall.Add(nominalDay).In(loc).Zone()
	var found []time.Time
	for _, off := range []int{before, after} {
		at := wall.Add(-time.Duration(off) * time.Second)
		if _, o := at.In(loc).Zone(); o == off {
			found = append(found, at.In(loc))
		}
	}
	switch {
	case len(found) == 0: // gap
		return wall.Add(-time.Duration(before) * time.Second).In(loc)
	case len(found) == 1 || found[0].Equal(found[1]):
		return found[0]
	}
	first, second := found[0], found[1]
	if second.Before(first) {
		first, second = second, first
	}
	if later {
		return second
	}
	return first
}

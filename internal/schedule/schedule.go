package schedule

import (
	"fmt"
	"time"
)

// Schedule is a disk backup schedule: a repeating interval in a time zone.
// The zero Schedule is not usable; make one with New.
type Schedule struct {
	interval Interval
	loc      *time.Location
	timeZone string

	// the anchor's wall-clock time of day, in seconds after midnight
	anchorClock int
	anchor      time.Time // first instant a backup is due
}

// New returns the schedule of a policy whose repeatingTimeIntervals[0] is
// interval and whose timeZone is timeZone (empty: the interval's own offset).
func New(interval, timeZone string) (*Schedule, error) {
	iv, err := ParseInterval(interval)
	if err != nil {
		return nil, err
	}
	var loc *time.Location
	if timeZone == "" {
		loc = iv.Start.Location()
	} else if loc, err = LoadLocation(timeZone); err != nil {
		return nil, err
	}
	return NewInLocation(iv, loc, timeZone), nil
}

// NewInLocation returns the schedule of iv in loc; timeZone is the name to
// report (it may be empty).
func NewInLocation(iv Interval, loc *time.Location, timeZone string) *Schedule {
	h, m, s := iv.Start.Clock()
	y, mo, d := iv.Start.Date()
	sc := &Schedule{
		interval:    iv,
		loc:         loc,
		timeZone:    timeZone,
		anchorClock: h*3600 + m*60 + s,
	}
	sc.anchor = resolveLocal(y, mo, d, h, m, s, 0, loc, false)
	return sc
}

// Interval returns the schedule's repeating interval.
func (s *Schedule) Interval() Interval { return s.interval }

// Location returns the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// TimeZone returns the time zone name the schedule was made with.
func (s *Schedule) TimeZone() string { return s.timeZone }

// Anchor returns the first instant a backup is due.
func (s *Schedule) Anchor() time.Time { return s.anchor }

// TimesOfDay returns the wall-clock times of day at which backups start,
// as offsets from midnight, in increasing order.
func (s *Schedule) TimesOfDay() []time.Duration {
	step := int(s.interval.Every / time.Second)
	n := 86400 / step
	first := s.anchorClock % step
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(first+i*step) * time.Second
	}
	return out
}

// Next returns the first instant strictly after after at which a backup is
// due. See the package documentation for the behaviour across DST changes.
func (s *Schedule) Next(after time.Time) time.Time {
	if after.Before(s.anchor) {
		return s.anchor
	}
	slots := s.TimesOfDay()
	y, mo, d := after.In(s.loc).Date()
	// Start a day early and look one day past the first day with a due
	// slot: a slot late on one local day can resolve past midnight (a gap),
	// and a zone may skip a whole day. Every day has at least one slot, so a
	// few days always suffice.
	var best time.Time
	found := -1
	for i := -1; i < 8; i++ {
		if found >= 0 && i > found+1 {
			return best
		}
		for _, off := range slots {
			sec := int(off / time.Second)
			at := resolveLocal(y, mo, d+i, sec/3600, sec/60%60, sec%60, 0, s.loc, false)
			if at.After(after) && !at.Before(s.anchor) && (best.IsZero() || at.Before(best)) {
				best = at
				if found < 0 {
					found = i
				}
			}
		}
	}
	if !best.IsZero() {
		return best
	}
	panic(fmt.Sprintf("schedule: no backup due within a week after %v for %v in %v", after, s.interval, s.loc))
}

// Times returns the instants in (from, to] at which backups are due.
func (s *Schedule) Times(from, to time.Time) []time.Time {
	var out []time.Time
	for t := s.Next(from); !t.After(to); t = s.Next(t) {
		out = append(out, t)
	}
	return out
}

// Upcoming returns the next n instants strictly after after at which
// backups are due, in order: what a policy page shows as "next backups".
func (s *Schedule) Upcoming(after time.Time, n int) []time.Time {
	out := make([]time.Time, 0, max(n, 0))
	for t := after; len(out) < n; {
		t = s.Next(t)
		out = append(out, t)
	}
	return out
}

package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// MaxBackups is the number of scheduled backups a disk policy may retain at
// once: incremental snapshots are limited to 500 per disk and Azure keeps 50
// for on-demand backups ("backup policy limits the total backups to 450").
const MaxBackups = 450

// MaxRetentionYear is the absolute retention limit for disk backups, one
// year (compared with a duration's Nominal length).
const MaxRetentionYear = nominalYear

// ErrRetentionExceeded matches (errors.Is) every *RetentionError.
var ErrRetentionExceeded = errors.New("retention exceeds the maximum")

// RetentionError is a retention longer than MaxRetention allows.
type RetentionError struct {
	Retention Duration
	Every     time.Duration // the schedule's period
	Max       time.Duration // the limit, from MaxRetention
	ByCount   bool          // the limit is MaxBackups backups, not 1 year
}

func (e *RetentionError) Error() string {
	if !e.ByCount {
		return fmt.Sprintf("retention %s exceeds the maximum of 1 year (P1Y, 365 days)", e.Retention)
	}
	every := "every hour"
	if h := int(e.Every / time.Hour); h != 1 {
		every = "every " + strconv.Itoa(h) + " hours"
	}
	return fmt.Sprintf("retention %s exceeds the maximum of %s (%s) for backups %s (%d backups)",
		e.Retention, describeDays(e.Max), fromDuration(e.Max), every, MaxBackups)
}

// Is makes errors.Is(err, ErrRetentionExceeded) true.
func (e *RetentionError) Is(target error) bool { return target == ErrRetentionExceeded }

// MaxRetention returns the longest retention a disk policy with backups
// every every may have: 1 year or MaxBackups backups, whichever is shorter.
// The result is exact (450 hourly backups: 18 days 18 hours), and a
// retention is within it when its Nominal length is not longer.
// It also reports whether the limit is the backup count (true) or the year.
func MaxRetention(every time.Duration) (max time.Duration, byCount bool) {
	if every <= 0 {
		return MaxRetentionYear, false
	}
	byBackups := MaxBackups * every
	if byBackups < MaxRetentionYear {
		return byBackups, true
	}
	return MaxRetentionYear, false
}

// CheckRetention reports whether d is a valid retention for a schedule
// with backups every every: positive and within MaxRetention. Its error
// says precisely which limit applies and what the maximum is.
func CheckRetention(d Duration, every time.Duration) error {
	if d.Nominal() <= 0 {
		return fmt.Errorf("%w: retention %s is not positive", ErrInvalidDuration, d)
	}
	max, byCount := MaxRetention(every)
	if d.Nominal() <= max {
		return nil
	}
	return &RetentionError{Retention: d, Every: every, Max: max, ByCount: byCount}
}

// describeDays writes a length as days: "225 days" or "18.75 days".
func describeDays(d time.Duration) string {
	days := float64(d) / float64(nominalDay)
	return strconv.FormatFloat(days, 'f', -1, 64) + " days"
}

// fromDuration expresses an exact length in days, hours, minutes, seconds.
func fromDuration(d time.Duration) Duration {
	s := int(d / time.Second)
	return Duration{Days: s / 86400, Hours: s / 3600 % 24, Minutes: s / 60 % 60, Seconds: s % 60}
}

// Criterion is an absolute tagging criterion of a retention tag.
type Criterion string

// The criteria disk policies use. A default tag has no criterion.
const (
	FirstOfDay  Criterion = "FirstOfDay"
	FirstOfWeek Criterion = "FirstOfWeek"
)

// TagRule is one retention tag of a policy: its tagging criterion and
// priority and the retention of the backups it tags.
type TagRule struct {
	Name string
	// Default marks the tag given when no criterion matches.
	Default bool
	// Criterion is FirstOfDay or FirstOfWeek; empty for the default tag.
	Criterion Criterion
	// Priority is the taggingPriority: when several criteria match, the
	// lowest number wins.
	Priority  int
	Retention Duration
}

// Retention decides the tag and expiry of each successful backup.
type Retention struct {
	// Location is the policy's time zone; days and weeks are its calendar.
	Location *time.Location
	Rules    []TagRule
}

// Decision is the tag of one backup and when it expires.
type Decision struct {
	Rule   TagRule
	Expiry time.Time
}

// Decide returns the tag and expiry of a backup that succeeded at at, given
// the times of the earlier successful backups of the same backup instance
// (scheduled and on-demand; times not before at are ignored). It fails if
// the rules have no default tag.
func (r Retention) Decide(at time.Time, earlier []time.Time) (Decision, error) {
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	firstOfDay, firstOfWeek := true, true
	day := localDay(at, loc)
	week := day - weekdayOf(day)
	for _, e := range earlier {
		if !e.Before(at) {
			continue
		}
		ed := localDay(e, loc)
		if ed == day {
			firstOfDay = false
		}
		if ed-weekdayOf(ed) == week {
			firstOfWeek = false
		}
	}
	var best *TagRule
	var def *TagRule
	for i := range r.Rules {
		rule := &r.Rules[i]
		if rule.Default {
			if def == nil {
				def = rule
			}
			continue
		}
		match := (rule.Criterion == FirstOfDay && firstOfDay) || (rule.Criterion == FirstOfWeek && firstOfWeek)
		if match && (best == nil || rule.Priority < best.Priority) {
			best = rule
		}
	}
	if best == nil {
		best = def
	}
	if best == nil {
		return Decision{}, errors.New("schedule: retention rules have no default tag")
	}
	return Decision{Rule: *best, Expiry: best.Retention.AddTo(at, loc)}, nil
}

// localDay numbers the calendar day of t in loc: days since 1970-01-01.
func localDay(t time.Time, loc *time.Location) int64 {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// weekdayOf returns the day of the week of a day number, Sunday = 0.
// Day 0 (1970-01-01) was a Thursday.
func weekdayOf(day int64) int64 {
	return ((day+4)%7 + 7) % 7
}

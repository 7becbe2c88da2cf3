package job

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"coffer/internal/odata"
	"coffer/internal/resource"
)

// Operations a jobs $filter may name: the operations of job records, plus
// OnDemandBackup and ScheduledBackup, which the Azure CLI uses for backups
// triggered by a user and by a policy.
var filterOperations = []string{OpBackup, "OnDemandBackup", "ScheduledBackup", OpRestore, OpRetention,
	OpValidateForBackup, OpValidateRestore, OpDeleteProtection}

var filterStatuses = []Status{InProgress, Completed, Failed, Cancelled}

// ParseFilter parses the $filter of a backup jobs list: comparisons of
//
//	status     eq | ne  InProgress, Completed, Failed, Cancelled
//	operation  eq | ne  Backup, OnDemandBackup, ScheduledBackup, Restore, Retention, …
//	startTime  gt | ge | lt | le  a date-time
//	endTime    gt | ge | lt | le  a date-time (a job still running has none)
//
// combined with and, or, not and parentheses, all evaluated as written
// (so "status eq 'Failed' or status eq 'Cancelled'" lists both, and two
// startTime bounds make a window). Anything else is a 400 InvalidFilter
// that names what is not supported; nothing is ignored. Names and values
// are case-insensitive.
func ParseFilter(s string) (Filter, error) {
	e, err := odata.Parse(s)
	if err == nil && e != nil {
		var where predicate
		if where, err = compile(e); err == nil {
			return Filter{where: where}, nil
		}
	}
	if err != nil {
		return Filter{}, resource.InvalidFilter(s, odata.Reason(err))
	}
	return Filter{}, nil
}

// predicate is a compiled $filter.
type predicate func(r Record) bool

func compile(e odata.Expr) (predicate, error) {
	switch x := e.(type) {
	case *odata.Logical:
		l, err := compile(x.L)
		if err != nil {
			return nil, err
		}
		r, err := compile(x.R)
		if err != nil {
			return nil, err
		}
		if x.Or {
			return func(j Record) bool { return l(j) || r(j) }, nil
		}
		return func(j Record) bool { return l(j) && r(j) }, nil
	case *odata.Not:
		p, err := compile(x.X)
		if err != nil {
			return nil, err
		}
		return func(j Record) bool { return !p(j) }, nil
	case *odata.Call:
		return nil, fmt.Errorf("the function %s() is not supported in a jobs filter", x.Name)
	case *odata.Compare:
		return compileCompare(x)
	}
	return nil, fmt.Errorf("unsupported expression %s", e)
}

func compileCompare(c *odata.Compare) (predicate, error) {
	eqNe := func(match func(r Record) bool) (predicate, error) {
		switch c.Op {
		case odata.Eq:
			return match, nil
		case odata.Ne:
			return func(r Record) bool { return !match(r) }, nil
		}
		return nil, fmt.Errorf("%s takes eq or ne, not %s", c.Name, c.Op)
	}
	switch strings.ToLower(c.Name) {
	case "status":
		i := slices.IndexFunc(filterStatuses, func(s Status) bool { return strings.EqualFold(string(s), c.Value.Text) })
		if i < 0 {
			return nil, fmt.Errorf("status %s is not one of InProgress, Completed, Failed, Cancelled", c.Value)
		}
		want := filterStatuses[i]
		return eqNe(func(r Record) bool { return r.Status == want })
	case "operation":
		i := slices.IndexFunc(filterOperations, func(s string) bool { return strings.EqualFold(s, c.Value.Text) })
		if i < 0 {
			return nil, fmt.Errorf("operation %s is not one of %s", c.Value, strings.Join(filterOperations, ", "))
		}
		want := filterOperations[i]
		return eqNe(func(r Record) bool { return Filter{Operation: want}.Match(r) })
	case "starttime", "endtime":
		var get func(r Record) time.Time
		if strings.EqualFold(c.Name, "startTime") {
			get = func(r Record) time.Time { return r.StartTime }
		} else {
			get = func(r Record) time.Time { return r.EndTime }
		}
		t, err := c.Value.Time()
		if err != nil {
			return nil, err
		}
		var cmp func(a time.Time) bool
		switch c.Op {
		case odata.Gt:
			cmp = func(a time.Time) bool { return a.After(t) }
		case odata.Ge:
			cmp = func(a time.Time) bool { return !a.Before(t) }
		case odata.Lt:
			cmp = func(a time.Time) bool { return a.Before(t) }
		case odata.Le:
			cmp = func(a time.Time) bool { return !a.After(t) }
		default:
			return nil, fmt.Errorf("%s takes gt, ge, lt or le (a time window), not %s", c.Name, c.Op)
		}
		return func(r Record) bool {
			v := get(r)
			return !v.IsZero() && cmp(v)
		}, nil
	}
	return nil, fmt.Errorf("unknown property '%s': a jobs filter can compare status, operation, startTime and endTime", c.Name)
}

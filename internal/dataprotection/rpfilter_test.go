package dataprotection_test

import (
	"strings"
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/resource"
)

func TestParseRPFilter(t *testing.T) {
	a := time.Date(2021, 8, 1, 0, 0, 0, 0, time.UTC)
	b := time.Date(2021, 8, 31, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		filter string
		want   dataprotection.RPFilter
	}{
		{"", dataprotection.RPFilter{}},
		{"startDate eq '2021-08-01T00:00:00Z' and endDate eq '2021-08-31T00:00:00Z'", dataprotection.RPFilter{Start: a, End: b}},
		{"StartDate GE 2021-08-01T00:00:00Z", dataprotection.RPFilter{Start: a}},
		{"startDate gt '2021-08-01T00:00:00Z'", dataprotection.RPFilter{Start: a.Add(time.Nanosecond)}},
		{"endDate lt '2021-08-31'", dataprotection.RPFilter{End: b.Add(-time.Nanosecond)}},
		{"(endDate le '2021-08-31T02:00:00+02:00')", dataprotection.RPFilter{End: b}},
		{"startDate eq '2021-08-01 12:00:00 AM'", dataprotection.RPFilter{Start: a}},
	}
	for _, tc := range tests {
		got, err := dataprotection.ParseRPFilter(tc.filter)
		if err != nil || !got.Start.Equal(tc.want.Start) || !got.End.Equal(tc.want.End) {
			t.Errorf("ParseRPFilter(%q) = %+v, %v; want %+v", tc.filter, got, err, tc.want)
		}
	}
	refused := []struct{ filter, says string }{
		{"startDate eq '2021-08-01T00:00:00Z' or endDate eq '2021-08-31T00:00:00Z'", "'or' is not supported"},
		{"not startDate eq '2021-08-01T00:00:00Z'", "'not' is not supported"},
		{"startDate eq '2021-08-01T00:00:00Z' and startDate eq '2021-08-31T00:00:00Z'", "startDate is given twice"},
		{"startDate le '2021-08-01T00:00:00Z'", "startDate takes eq, ge or gt"},
		{"endDate gt '2021-08-01T00:00:00Z'", "endDate takes eq, le or lt"},
		{"endDate ne '2021-08-01T00:00:00Z'", "endDate takes eq, le or lt"},
		{"recoveryPointTier eq 'Snapshot'", "unknown property 'recoveryPointTier'"},
		{"startDate eq 'soon'", "is not a date-time"},
		{"isVisible()", "isVisible() is not supported"},
		{"startDate eq", "expected a value"},
	}
	for _, tc := range refused {
		_, err := dataprotection.ParseRPFilter(tc.filter)
		e := resource.AsError(err)
		if e == nil || e.Code != "InvalidFilter" || e.Kind != resource.KindBadRequest || !strings.Contains(e.Message, tc.says) {
			t.Errorf("ParseRPFilter(%q) = %v; want 400 InvalidFilter saying %q", tc.filter, err, tc.says)
		}
	}
}

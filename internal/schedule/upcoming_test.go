package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestUpcoming(t *testing.T) {
	tests := []struct {
		name, interval, tz string
		after              time.Time
		n                  int
		want               string // local times, space-separated
	}{
		{"4-hourly from 02:00", "R/2020-04-05T02:00:00+00:00/PT4H", "UTC", time.Date(2024, 1, 10, 7, 0, 0, 0, time.UTC), 10,
			"2024-01-10T10:00:00Z 2024-01-10T14:00:00Z 2024-01-10T18:00:00Z 2024-01-10T22:00:00Z 2024-01-11T02:00:00Z " +
				"2024-01-11T06:00:00Z 2024-01-11T10:00:00Z 2024-01-11T14:00:00Z 2024-01-11T18:00:00Z 2024-01-11T22:00:00Z"},
		// Berlin springs forward at 02:00 on 2024-03-31: the 02:30 slot
		// runs at 03:30 local that day, and the rest stay on 02:30.
		{"daily across spring forward", "R/2024-01-01T02:30:00+01:00/P1D", "W. Europe Standard Time", time.Date(2024, 3, 29, 12, 0, 0, 0, time.UTC), 4,
			"2024-03-30T02:30:00+01:00 2024-03-31T03:30:00+02:00 2024-04-01T02:30:00+02:00 2024-04-02T02:30:00+02:00"},
		// Nothing is due before the schedule's first instant.
		{"before the anchor", "R/2030-06-01T08:00:00+00:00/PT12H", "UTC", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 3,
			"2030-06-01T08:00:00Z 2030-06-01T20:00:00Z 2030-06-02T08:00:00Z"},
		{"none", "R/2020-04-05T02:00:00+00:00/PT4H", "UTC", time.Date(2024, 1, 10, 7, 0, 0, 0, time.UTC), 0, ""},
	}
	for _, tt := range tests {
		s := mustNew(t, tt.interval, tt.tz)
		var got []string
		for _, at := range s.Upcoming(tt.after, tt.n) {
			got = append(got, at.In(s.Location()).Format(time.RFC3339))
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("%s: Upcoming = %s\nwant %s", tt.name, g, tt.want)
		}
	}
}

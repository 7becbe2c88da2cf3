package schedule

import (
	"errors"
	"testing"
	"time"
)

func TestWindowsZonesLoad(t *testing.T) {
	zones := WindowsZones()
	if len(zones) < 135 {
		t.Errorf("only %d Windows zones", len(zones))
	}
	for win, iana := range zones {
		loc, err := LoadLocation(win)
		if err != nil {
			t.Errorf("LoadLocation(%q) [%s]: %v", win, iana, err)
			continue
		}
		if loc.String() != iana {
			t.Errorf("LoadLocation(%q) = %s, want %s", win, loc, iana)
		}
	}
}

func TestLoadLocation(t *testing.T) {
	jan := time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)
	jul := time.Date(2024, 7, 15, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name           string
		janOff, julOff int // hours*60 minutes
	}{
		{"UTC", 0, 0},
		{"", 0, 0},
		{"utc", 0, 0},
		{"Pacific Standard Time", -8 * 60, -7 * 60},
		{"pacific standard time", -8 * 60, -7 * 60},
		{"W. Europe Standard Time", 60, 120},
		{"India Standard Time", 330, 330},
		{"Nepal Standard Time", 345, 345},
		{"AUS Eastern Standard Time", 660, 600},
		{"Europe/Berlin", 60, 120},
		{"America/New_York", -300, -240},
		{"Asia/Kolkata", 330, 330},
		{"Etc/GMT+12", -720, -720},
	}
	for _, tt := range tests {
		loc, err := LoadLocation(tt.name)
		if err != nil {
			t.Errorf("LoadLocation(%q): %v", tt.name, err)
			continue
		}
		_, jo := jan.In(loc).Zone()
		_, uo := jul.In(loc).Zone()
		if jo != tt.janOff*60 || uo != tt.julOff*60 {
			t.Errorf("LoadLocation(%q): offsets %d/%d min, want %d/%d", tt.name, jo/60, uo/60, tt.janOff, tt.julOff)
		}
	}
	for _, bad := range []string{"Local", "local", "Pacific Time", "Mars/Olympus", "../etc/passwd", "Europe\\Berlin", "Coordinated Universal Time", "PST8PDT "} {
		if _, err := LoadLocation(bad); !errors.Is(err, ErrUnknownTimeZone) {
			t.Errorf("LoadLocation(%q) error = %v, want ErrUnknownTimeZone", bad, err)
		}
	}
}

package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// FuzzParseRange feeds arbitrary Range / x-ms-range headers of the data
// plane to parseRange: whatever it accepts is a valid range that formats
// back to itself.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-511", "bytes=512-", "bytes=0-0", " bytes=1-2", "bytes=-5", "bytes=5-4", "bytes=0-1,2-3",
		"bytes=9223372036854775807-", "bytes=+1-2", "items=0-1", "bytes=00-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, err := parseRange(s)
		if err != nil {
			var se *storageError
			if !errors.As(err, &se) || se.status != http.StatusBadRequest {
				t.Fatalf("parseRange(%q) = %v, want a 400 storage error", s, err)
			}
			return
		}
		if start < 0 || (end >= 0 && end < start) || end < -1 {
			t.Fatalf("parseRange(%q) = %d-%d", s, start, end)
		}
		again := fmt.Sprintf("bytes=%d-", start)
		if end >= 0 {
			again += fmt.Sprint(end)
		}
		s2, e2, err := parseRange(again)
		if err != nil || s2 != start || e2 != end {
			t.Fatalf("parseRange(%q) = %d-%d, but %q parses as %d-%d, %v", s, start, end, again, s2, e2, err)
		}
	})
}

// TestParseRangeMalformed: a range whose ends are not plain digits is a
// 400 (found by FuzzParseRange: "bytes=0--2" was read as "bytes=0-", so a
// malformed header read the whole blob instead of being refused).
func TestParseRangeMalformed(t *testing.T) {
	for _, s := range []string{"bytes=0--2", "bytes=5--1", "bytes=+1-2", "bytes=1-+2", "bytes=-5", "bytes=0- 1", "bytes=0x1-2"} {
		if start, end, err := parseRange(s); err == nil {
			t.Errorf("parseRange(%q) = %d-%d, want an error", s, start, end)
		}
	}
	for s, want := range map[string][2]int64{"bytes=0-511": {0, 511}, "bytes=512-": {512, -1}, " bytes=7-7 ": {7, 7}} {
		if start, end, err := parseRange(s); err != nil || start != want[0] || end != want[1] {
			t.Errorf("parseRange(%q) = %d-%d, %v, want %d-%d", s, start, end, err, want[0], want[1])
		}
	}
}

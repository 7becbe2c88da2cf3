package dataprotection

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"coffer/internal/resource"
)

// FuzzStorageSettings feeds arbitrary storage settings to the vault's
// check: it must not panic and must refuse only with an ARM client error
// (400 and a code). (The request bodies are fuzzed by api's
// FuzzDecodeDataProtection; the service-level handling of the same bodies
// end to end by e2e's FuzzAPIRequest.)
func FuzzStorageSettings(f *testing.F) {
	for _, s := range []string{
		`[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]`,
		`[{"datastoreType":"x","type":"GeoRedundant"},{}]`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	var s Service
	f.Fuzz(func(t *testing.T, body []byte) {
		var settings []StorageSetting
		if json.Unmarshal(body, &settings) != nil {
			return
		}
		_, err := s.checkStorage(settings)
		if err == nil {
			return
		}
		if e := resource.AsError(err); e == nil || e.Kind != resource.KindBadRequest || e.Code == "" {
			t.Fatalf("%v is not an ARM 400", err)
		}
	})
}

// FuzzRPFilter feeds arbitrary recovery point $filter values to
// ParseRPFilter: it refuses with 400 InvalidFilter, or returns a window
// that a filter written from it parses to again.
func FuzzRPFilter(f *testing.F) {
	for _, s := range []string{"", "startDate eq '2021-08-01T00:00:00Z' and endDate eq '2021-08-31T00:00:00Z'",
		"startDate ge '2021-08-01' AND endDate le '2021-08-31 10:00:00 PM'", "startDate eq '2021-08-01T00:00:00.123+05:30'",
		"endDate eq 2021-08-01T00:00:00", url.QueryEscape("startDate eq '2021-08-01T00:00:00Z'"), "startDate eq", "foo eq 'x'", "startDate xx '2021-01-01'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := ParseRPFilter(s)
		if err != nil {
			if e := resource.AsError(err); e == nil || e.Kind != resource.KindBadRequest || e.Code != "InvalidFilter" {
				t.Fatalf("ParseRPFilter(%q): %v, want 400 InvalidFilter", s, err)
			}
			return
		}
		var clauses []string
		if !w.Start.IsZero() {
			clauses = append(clauses, "startDate eq '"+w.Start.Format(time.RFC3339Nano)+"'")
		}
		if !w.End.IsZero() {
			clauses = append(clauses, "endDate eq '"+w.End.Format(time.RFC3339Nano)+"'")
		}
		again, err := ParseRPFilter(strings.Join(clauses, " and "))
		if err != nil || !again.Start.Equal(w.Start) || !again.End.Equal(w.End) {
			t.Fatalf("ParseRPFilter(%q) = %+v, which does not round-trip: %+v, %v", s, w, again, err)
		}
	})
}

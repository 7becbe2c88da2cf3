package chunk

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseID: an ID's text form parses back to it (ParseID and
// UnmarshalText alike); anything else is refused with ErrInvalidID.
func FuzzParseID(f *testing.F) {
	f.Add(Hash([]byte("a")).String())
	f.Add(strings.ToUpper(Hash(nil).String()))
	f.Add(strings.Repeat("0", 63) + "g")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		var u ID
		uerr := u.UnmarshalText([]byte(s))
		if (err == nil) != (uerr == nil) || u != id {
			t.Fatalf("ParseID(%q) = %v, %v; UnmarshalText = %v, %v", s, id, err, u, uerr)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("ParseID(%q): %v does not wrap ErrInvalidID", s, err)
			}
			return
		}
		if !strings.EqualFold(id.String(), s) {
			t.Fatalf("ParseID(%q) = %s", s, id)
		}
	})
}

// TestParseIDInvalidIsZero: a refused ID returns the zero ID, not the
// bytes decoded before the bad character (found by FuzzParseID).
func TestParseIDInvalidIsZero(t *testing.T) {
	for _, s := range []string{strings.Repeat("1", 62) + "xx", strings.Repeat("ab", 20) + "g" + strings.Repeat("0", 23)} {
		if id, err := ParseID(s); err == nil || !id.IsZero() {
			t.Errorf("ParseID(%q) = %v, %v; want the zero ID and an error", s, id, err)
		}
	}
}

package chunk

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestID(t *testing.T) {
	id := Hash([]byte("hello"))
	// BLAKE3-256 of "hello".
	const want = "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
	if id.String() != want || id.Short() != want[:8] {
		t.Fatalf("Hash(hello) = %s", id)
	}
	p, err := ParseID(want)
	if err != nil || p != id {
		t.Fatalf("ParseID: %v %v", p, err)
	}
	for _, bad := range []string{"", "zz", want[:63], want + "0", "g" + want[1:]} {
		if _, err := ParseID(bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseID(%q) = %v", bad, err)
		}
	}
	b, _ := json.Marshal(map[ID]int{id: 1})
	var m map[ID]int
	if err := json.Unmarshal(b, &m); err != nil || m[id] != 1 {
		t.Fatalf("JSON map key round trip: %s %v", b, err)
	}
	if !(ID{}).IsZero() || id.IsZero() {
		t.Fatal("IsZero")
	}
}

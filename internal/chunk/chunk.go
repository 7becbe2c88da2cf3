// Package chunk is the content-address vocabulary of Coffer: the ID of a
// chunk and how it is computed. It does no I/O.
//
// An ID is the BLAKE3-256 hash of a chunk's uncompressed contents. BLAKE3 was
// chosen over SHA-256 by measurement on the project's 2-core machines
// (docs/design.md, "Chunk IDs").
package chunk

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
)

// Size is the length of an ID in bytes.
const Size = 32

// ID identifies a chunk by the hash of its contents. It is a value type and
// can be used as a map key.
type ID [Size]byte

// Hash returns the ID of data.
func Hash(data []byte) ID {
	return ID(blake3.Sum256(data))
}

// ErrInvalidID is returned by ParseID for malformed input.
var ErrInvalidID = errors.New("invalid chunk ID")

// ParseID parses the 64-character lower- or upper-case hex form of an ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*Size {
		return id, fmt.Errorf("parse chunk ID %q: %w", s, ErrInvalidID)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("parse chunk ID %q: %w", s, ErrInvalidID)
	}
	return id, nil
}

// String returns the 64-character hex form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex characters, for logs and messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is the zero ID (no chunk).
func (id ID) IsZero() bool { return id == ID{} }

// MarshalText encodes the ID as hex (used by encoding/json).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes the hex form.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

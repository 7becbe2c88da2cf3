package monitor

import "coffer/internal/seal"

// Sealer encrypts the secrets of notification targets (a webhook's
// signing secret, an SMTP password) under a key that is kept out of the
// metadata store (server: DATA/notify.key, owner-only): a copy of the
// database alone does not reveal them. They are sealed, not hashed,
// because the server needs them back to sign and to log in; each is bound
// to its target's name, so a sealed value cannot be moved to another
// target.
type Sealer = seal.Sealer

// ErrUnseal is returned when a sealed secret cannot be opened (another
// key, or tampered with).
var ErrUnseal = seal.ErrUnseal

// NewSealer returns a sealer with a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) { return seal.New(key) }

package monitor

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// Sealer encrypts the secrets of notification targets (a webhook's
// signing secret, an SMTP password) with AES-256-GCM under a key that is
// kept out of the metadata store (server: DATA/notify.key, owner-only): a
// copy of the database alone does not reveal them. They are sealed, not
// hashed, because the server needs them back to sign and to log in; each
// is bound to its target's name (the GCM additional data), so a sealed
// value cannot be moved to another target.
type Sealer struct{ aead cipher.AEAD }

// ErrUnseal is returned when a sealed secret cannot be opened (another
// key, or tampered with).
var ErrUnseal = errors.New("monitor: sealed secret cannot be opened")

// NewSealer returns a sealer with a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("monitor: sealing key of %d bytes, want 32", len(key))
	}
	b, err := aes.NewCipher(key[:32])
	if err != nil {
		return nil, fmt.Errorf("monitor: sealing key: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("monitor: sealing key: %w", err)
	}
	return &Sealer{aead: g}, nil
}

// Seal encrypts secret for the target named name.
func (s *Sealer) Seal(name, secret string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("monitor: seal: %w", err)
	}
	out := s.aead.Seal(nonce, nonce, []byte(secret), []byte(name))
	return base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal made for the target named name.
func (s *Sealer) Open(name, sealed string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(b) < s.aead.NonceSize() {
		return "", ErrUnseal
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, b[:n], b[n:], []byte(name))
	if err != nil {
		return "", ErrUnseal
	}
	return string(pt), nil
}

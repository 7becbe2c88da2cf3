// Package seal encrypts small secrets that the server must read back (so
// cannot hash) under a key kept apart from where the sealed values are
// stored: AES-256-GCM with a random nonce, each value bound to a name (the
// GCM additional data), so that a sealed value moved under another name
// does not open. The notification targets' secrets (monitor, under
// DATA/notify.key) and the secrets the nodes share (cluster, under the
// master key) are sealed with it.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// KeySize is the length of a sealing key.
const KeySize = 32

// ErrUnseal is returned when a sealed value cannot be opened (another key,
// another name, or tampered with).
var ErrUnseal = errors.New("sealed secret cannot be opened")

// Sealer seals and opens values under one key. It is safe for concurrent
// use.
type Sealer struct{ aead cipher.AEAD }

// New returns a sealer with the first KeySize bytes of key.
func New(key []byte) (*Sealer, error) {
	if len(key) < KeySize {
		return nil, fmt.Errorf("sealing key of %d bytes, want %d", len(key), KeySize)
	}
	b, err := aes.NewCipher(key[:KeySize])
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	return &Sealer{aead: g}, nil
}

// Seal encrypts secret for name, in base64.
func (s *Sealer) Seal(name, secret string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := s.aead.Seal(nonce, nonce, []byte(secret), []byte(name))
	return base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal made for name.
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

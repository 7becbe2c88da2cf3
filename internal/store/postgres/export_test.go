package postgres

import (
	"context"

	"coffer/internal/store"
)

// UpdateHoldingKinds runs one attempt of fn as a re-run does: with the
// session locks of kinds taken before its transaction begins, and hook
// called between the two.
func UpdateHoldingKinds(ctx context.Context, s *Store, kinds []string, hook func(), fn func(tx store.Tx) error) error {
	s.lockedHook = hook
	defer func() { s.lockedHook = nil }()
	_, err := s.update(ctx, fn, kinds)
	return err
}

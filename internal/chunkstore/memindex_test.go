package chunkstore_test

import (
	"testing"

	"coffer/internal/chunkstore"
	"coffer/internal/chunkstore/indextest"
)

func TestMemIndex(t *testing.T) {
	indextest.Run(t, func(t *testing.T) chunkstore.Index { return chunkstore.NewMemIndex() })
}

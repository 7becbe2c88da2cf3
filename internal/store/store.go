// Package store defines Coffer's metadata store: a transactional document
// store of ARM resources and service records, stamped with one monotonic
// index (Nomad-style) that doubles as the ETag.
//
// The interface is small on purpose so that SQLite (store/sqlite) and
// PostgreSQL implement it alike and domain code never sees SQL. Every
// implementation runs the suite in store/storetest.
package store

import (
	"context"
	"errors"
)

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned (wrapped) by Put with a CreateOnly or MatchIndex
// condition that does not hold.
var ErrConflict = errors.New("conflict")

// Object is one stored document.
//
// Key is the object's identity within its Kind; for ARM resources it is the
// lower-cased resource ID, so that lookups are case-insensitive while Data
// keeps the caller's casing. Keys are hierarchical paths: List by prefix
// finds everything under a scope.
type Object struct {
	Kind        string
	Key         string
	Data        []byte
	CreateIndex uint64
	ModifyIndex uint64
}

// PutOptions are the conditions of a Put.
type PutOptions struct {
	// CreateOnly fails the Put with ErrConflict if the object exists.
	CreateOnly bool
	// MatchIndex, when non-zero, fails the Put with ErrConflict unless the
	// stored object's ModifyIndex equals it (optimistic concurrency, If-Match).
	MatchIndex uint64
}

// Query selects objects for List.
type Query struct {
	Kind   string // empty: every kind
	Prefix string // key prefix; empty: all keys
	After  string // only keys greater than this (paging)
	Limit  int    // 0: no limit
}

// Tx is a transaction. Reads see the transaction's own writes.
type Tx interface {
	// Get returns the object or an error wrapping ErrNotFound.
	Get(ctx context.Context, kind, key string) (Object, error)
	// Put inserts or replaces o, stamping CreateIndex (on insert) and
	// ModifyIndex with the transaction's index; it updates *o in place.
	Put(ctx context.Context, o *Object, opts PutOptions) error
	// Delete removes the object; it returns an error wrapping ErrNotFound if
	// it does not exist.
	Delete(ctx context.Context, kind, key string) error
	// List returns objects in key order.
	List(ctx context.Context, q Query) ([]Object, error)
	// Index returns the index this transaction stamps on its writes (read-
	// write transactions) or the latest committed index (read-only ones).
	Index() uint64
	// KindIndex returns the index of the last transaction that put or
	// deleted an object of kind (this one's, if it did; 0: none since the
	// store began counting). Index moves with every write; a cache of one
	// kind's objects keys on KindIndex to see changes to that kind alone.
	KindIndex(ctx context.Context, kind string) (uint64, error)
}

// Store runs transactions. Update commits when fn returns nil and rolls back
// otherwise; a committed Update is durable. View is a read-only snapshot.
type Store interface {
	Update(ctx context.Context, fn func(tx Tx) error) error
	View(ctx context.Context, fn func(tx Tx) error) error
	Close() error
}

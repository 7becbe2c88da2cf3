// Package store defines Coffer's metadata store: a transactional document
// store of ARM resources and service records, stamped with monotonic
// indexes (Nomad-style) that double as ETags, and the contract every
// implementation keeps.
//
// The interface is small on purpose so that SQLite (store/sqlite) and
// PostgreSQL (store/postgres) implement it alike and domain code never sees
// SQL. Every implementation runs the suite in store/storetest, which tests
// each point of the contract below.
//
// # The contract
//
// Transactions. Update runs its function in a read-write transaction that
// commits when the function returns nil and rolls back when it returns an
// error (or panics). A committed Update is durable. View runs its function
// in a read-only transaction.
//
// Re-runs. Update may run its function more than once: when the
// implementation cannot commit the transaction because a concurrent one
// conflicts with it (PostgreSQL's serialization failures and deadlocks), it
// rolls it back and runs the function again, from the start, on a new
// transaction, a bounded number of times, backing off between attempts, for
// as long as ctx lasts. Only the last run's writes are committed. So a
// function passed to Update must be safe to re-run: it reads what it needs
// through tx, and it keeps every other effect — appending to a slice
// declared outside it, sending on a channel, counting, logging, touching
// files or volumes, waking workers — either idempotent (assign, don't
// append: the last run's values win) or outside the function, after Update
// has returned nil. SQLite runs each function once; storetest.Rerun wraps
// any store so that every function runs twice, to test callers against
// re-runs without PostgreSQL.
//
// Isolation. Updates are serializable: the committed Updates have the
// effect of running one at a time in some order, so neither lost updates
// (two read-modify-writes of one object) nor write skew (two Updates each
// reading what the other writes) can happen. SQLite runs them one at a
// time; PostgreSQL runs them concurrently at SERIALIZABLE and re-runs the
// losers. A View reads one consistent snapshot of committed state, taken
// when it starts: it sees every Update that committed before it started and
// none that commit later (snapshot isolation; on PostgreSQL a View may see
// a snapshot that no serial order of the Updates would show, the read-only
// anomaly, which no caller depends on). Reads in a transaction see that
// transaction's own writes.
//
// Nesting. A View may run inside an Update's function (restore validation
// reads through services that open their own Views): it is a separate
// transaction, it does not see the enclosing Update's uncommitted writes,
// and it must not be used to decide what the Update writes (read through
// the Update's tx for that). An Update must not run inside an Update or a
// View, and a View must not run inside a View: implementations may hold a
// connection (SQLite's one writer, PostgreSQL's pools) for the outer
// transaction, so that nesting can wait forever.
//
// Indexes and ETags. Every Update has an index, Tx.Index, unique to it and
// larger than the index of every Update that committed before it began.
// Put stamps it as the object's ModifyIndex (and CreateIndex on insert),
// which is the object's ETag: MatchIndex is If-Match. Indexes may have
// gaps (a rolled-back or re-run Update, or one that wrote nothing, may use
// one up). Along one object's history, and along one kind's, ModifyIndex
// and KindIndex only grow, in commit order; across unrelated objects the
// order of indexes need not be the order of commits (PostgreSQL takes them
// from a sequence). A View's Index is the largest index of the committed
// Updates it sees: at least the index of every Update committed before it
// started.
//
// KindIndex is the index of the last committed Update that put or deleted
// an object of a kind (the transaction's own index if it did). There is one
// per kind, so a cache of one kind's objects (the RBAC policy over role
// assignments) keys on it and is not invalidated by writes of other kinds
// (job progress). Two Views that read the same KindIndex of a kind see the
// same objects of that kind.
//
// Conditions. Put with CreateOnly fails with ErrConflict if the object
// exists; Put with MatchIndex fails with ErrConflict unless the stored
// object exists and its ModifyIndex equals it (CheckPut decides, for every
// implementation). A failed condition changes nothing, and the function
// may go on in the same transaction.
//
// Listing and paging. List returns objects in (Key, Kind) order, optionally
// of one Kind, under a Prefix (a literal prefix: no wildcards), with keys
// greater than After and at most Limit of them: a caller pages by passing
// the last key it got as the next After. Keys compare as bytes (byte order
// is code point order for UTF-8), whatever the database's locale or case
// rules, and a prefix is a key range [Prefix, PrefixEnd(Prefix)) so that
// the key index serves it.
//
// Errors. A missing object is ErrNotFound (wrapped), from Get and Delete.
// Errors wrap their causes; callers match with errors.Is.
package store

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"
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

// CheckPut decides a Put of o at index, given the stored object cur
// (exists: whether there is one): it returns an error wrapping ErrConflict
// if a condition of opts does not hold, and otherwise stamps o's
// CreateIndex (kept from cur, or index for a new object) and ModifyIndex
// (index), and gives it empty, non-nil Data if it had none. Every
// implementation's Put runs it, so that they all decide alike.
func CheckPut(o *Object, cur Object, exists bool, opts PutOptions, index uint64) error {
	if opts.CreateOnly && exists {
		return fmt.Errorf("put %s %s: exists: %w", o.Kind, o.Key, ErrConflict)
	}
	if opts.MatchIndex != 0 && (!exists || cur.ModifyIndex != opts.MatchIndex) {
		return fmt.Errorf("put %s %s: index mismatch: %w", o.Kind, o.Key, ErrConflict)
	}
	o.ModifyIndex = index
	if exists {
		o.CreateIndex = cur.CreateIndex
	} else {
		o.CreateIndex = index
	}
	if o.Data == nil {
		o.Data = []byte{}
	}
	return nil
}

// Query selects objects for List.
type Query struct {
	Kind   string // empty: every kind
	Prefix string // key prefix, literal; empty: all keys
	After  string // only keys greater than this (paging)
	Limit  int    // 0: no limit
}

// PrefixEnd returns the end of the key range [p, end) of the strings that
// start with p, in byte order, or false if it has no end (p is empty or
// all U+10FFFF and 0xFF bytes). Every string with prefix p lies in the
// range, and so does no other valid UTF-8 string. A trailing rune is
// replaced by the next rune (past the surrogates) rather than by the next
// byte sequence, so that the end of a valid UTF-8 prefix is valid UTF-8,
// as PostgreSQL's text requires; a trailing byte that is not UTF-8 by the
// next byte. Keys are valid UTF-8 (PostgreSQL stores nothing else).
func PrefixEnd(p string) (string, bool) {
	for p != "" {
		r, n := utf8.DecodeLastRuneInString(p)
		if r == utf8.RuneError && n == 1 {
			if b := p[len(p)-1]; b != 0xff {
				return p[:len(p)-1] + string([]byte{b + 1}), true
			}
			p = p[:len(p)-1]
			continue
		}
		p = p[:len(p)-n]
		switch r {
		case utf8.MaxRune:
			continue
		case 0xD7FF: // the surrogates are not characters
			return p + string(rune(0xE000)), true
		default:
			return p + string(r+1), true
		}
	}
	return "", false
}

// Tx is a transaction. Reads see the transaction's own writes.
type Tx interface {
	// Get returns the object or an error wrapping ErrNotFound.
	Get(ctx context.Context, kind, key string) (Object, error)
	// Put inserts or replaces o, stamping CreateIndex (on insert) and
	// ModifyIndex with the transaction's index; it updates *o in place.
	// A condition of opts that does not hold fails it with ErrConflict.
	Put(ctx context.Context, o *Object, opts PutOptions) error
	// Delete removes the object; it returns an error wrapping ErrNotFound if
	// it does not exist.
	Delete(ctx context.Context, kind, key string) error
	// List returns objects in (Key, Kind) order (see Query).
	List(ctx context.Context, q Query) ([]Object, error)
	// Index returns the index this transaction stamps on its writes (read-
	// write transactions) or the largest index of the committed writes it
	// sees (read-only ones).
	Index() uint64
	// KindIndex returns the index of the last transaction that put or
	// deleted an object of kind (this one's, if it did; 0: none since the
	// store began counting). Index moves with every write; a cache of one
	// kind's objects keys on KindIndex to see changes to that kind alone.
	KindIndex(ctx context.Context, kind string) (uint64, error)
}

// Store runs transactions (see the package doc for the contract). Update
// commits when fn returns nil and rolls back otherwise, and may run fn more
// than once; a committed Update is durable. View is a read-only snapshot.
type Store interface {
	Update(ctx context.Context, fn func(tx Tx) error) error
	View(ctx context.Context, fn func(tx Tx) error) error
	Close() error
}

// Package location opens the metadata a `coffer serve --db` location names,
// on the implementation it names: a file path or sqlite:///PATH (SQLite:
// one node; the default is DATA/metadata.db), or postgres://… or
// postgresql://… (PostgreSQL: any number of nodes). What it opens is the
// whole metadata side: the store.Store, the chunk store's index and the
// job queue's backend, all in the one database.
package location

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"coffer/internal/capacity"
	"coffer/internal/chunkstore"
	"coffer/internal/job"
	"coffer/internal/store"
	"coffer/internal/store/postgres"
	"coffer/internal/store/sqlite"
)

// Metadata is an open metadata database.
type Metadata struct {
	// Store is the document store (*sqlite.Store or *postgres.Store).
	Store store.Store
	// Index is the chunk store's index, kept in the same database.
	Index chunkstore.Index
	// Tasks is the job queue's backend, kept in the same database.
	Tasks job.Backend
	// Kind is "sqlite" or "postgres".
	Kind string
	// WriteMetrics, if set, writes the store's metrics in Prometheus
	// text format (PostgreSQL's transaction retries).
	WriteMetrics func(w io.Writer)
}

// Close closes the database.
func (m *Metadata) Close() error { return m.Store.Close() }

// Options for Open.
type Options struct {
	// DefaultPath is the SQLite file used when the location is empty.
	DefaultPath string
	// Space, if set, is told of the SQLite store's no-space failures.
	Space *capacity.Monitor
}

// ErrUnknownScheme is wrapped when a location's URL scheme names no
// implementation.
var ErrUnknownScheme = errors.New("unknown metadata store scheme")

// Open opens (creating and migrating if needed) the metadata at loc.
func Open(ctx context.Context, loc string, opts Options) (*Metadata, error) {
	kind, target, err := Parse(loc, opts.DefaultPath)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "postgres":
		st, err := postgres.Open(ctx, target)
		if err != nil {
			return nil, err
		}
		return &Metadata{Store: st, Index: st.ChunkIndex(), Tasks: st.Queue(), Kind: kind, WriteMetrics: st.WriteMetrics}, nil
	default:
		st, err := sqlite.Open(ctx, target)
		if err != nil {
			return nil, err
		}
		st.Space = opts.Space
		return &Metadata{Store: st, Index: st.ChunkIndex(), Tasks: job.Objects{Store: st}, Kind: kind}, nil
	}
}

// Parse says which implementation loc names ("sqlite" or "postgres") and
// what to open it with (a file path, or the PostgreSQL URL as given).
func Parse(loc, defaultPath string) (kind, target string, err error) {
	if loc == "" {
		return "sqlite", defaultPath, nil
	}
	scheme, rest, ok := strings.Cut(loc, "://")
	if !ok {
		return "sqlite", loc, nil // a path
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return "postgres", loc, nil
	case "sqlite", "file":
		u, err := url.Parse(loc)
		if err != nil || u.Host != "" || u.Path == "" || u.RawQuery != "" {
			return "", "", fmt.Errorf("--db %s://%s: want %s:///ABSOLUTE/PATH", scheme, redact(rest), scheme)
		}
		return "sqlite", u.Path, nil
	}
	return "", "", fmt.Errorf("--db %s://…: %w (want a path, sqlite:///PATH or postgres://…)", scheme, ErrUnknownScheme)
}

// redact drops what may be a password from a location for messages.
func redact(s string) string {
	if at := strings.LastIndex(s, "@"); at >= 0 {
		return "…" + s[at:]
	}
	return s
}

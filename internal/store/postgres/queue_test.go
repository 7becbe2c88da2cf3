package postgres_test

import (
	"testing"

	"coffer/internal/job/jobtest"
	"coffer/internal/store/postgres/pgtest"
)

// TestQueueConformance runs the job queue's suite on PostgreSQL: every
// node of a test is a store of its own (its own pools) on one database.
func TestQueueConformance(t *testing.T) {
	c := pgtest.Start(t)
	jobtest.Run(t, func(t *testing.T) func() jobtest.Node {
		url := c.NewDatabase(t)
		return func() jobtest.Node {
			s := open(t, url)
			return jobtest.Node{Store: s, Backend: s.Queue()}
		}
	})
}

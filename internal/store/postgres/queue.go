package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"coffer/internal/job"
	"coffer/internal/store"
)

// Queue is the job queue's Backend in the job_tasks and job_done tables
// (migration 0003). Insert, Get, Replace, Finish, List and ForgetDone run
// in the caller's transaction of this store (a task is enqueued with its
// job record, acked with its result). Claim runs its own READ COMMITTED
// transaction: it picks candidates oldest first with FOR UPDATE SKIP
// LOCKED, so that concurrent claimers pass over each other's rows instead
// of waiting on them, and takes a transaction-level advisory lock on a
// candidate's target before checking that the target has no live lease,
// so that two claimers never lease two tasks of one target.
type Queue struct{ s *Store }

var _ job.Backend = (*Queue)(nil)

// Queue returns the job queue backend kept in s.
func (s *Store) Queue() *Queue { return &Queue{s: s} }

// claimBatch is how many candidates one claim locks at most.
const claimBatch = 16

const taskColumns = `id, type, target_name, payload, state, attempts, max_attempts, not_before, created_at,
	lease_owner, lease_expiry, last_error, canceled, node`

func scanTask(row pgx.CollectableRow) (job.Task, error) {
	var (
		t                          job.Task
		notBefore, created, expiry int64
	)
	err := row.Scan(&t.ID, &t.Type, &t.Target, &t.Payload, &t.State, &t.Attempts, &t.MaxAttempts, &notBefore, &created,
		&t.LeaseOwner, &expiry, &t.LastError, &t.Canceled, &t.Node)
	t.NotBefore, t.CreatedAt = fromNanos(notBefore), fromNanos(created)
	if expiry != 0 {
		t.LeaseExpiry = fromNanos(expiry)
	}
	return t, err
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// pgTx returns the pgx transaction of st, which must be one of this
// store's.
func pgTx(st store.Tx) (pgx.Tx, error) {
	t, ok := Tx(st)
	if !ok {
		return nil, fmt.Errorf("job queue: a transaction of another store (%T)", st)
	}
	return t, nil
}

// Insert implements job.Backend.
func (q *Queue) Insert(ctx context.Context, st store.Tx, t job.Task) error {
	tx, err := pgTx(st)
	if err != nil {
		return err
	}
	key := strings.ToLower(t.ID)
	var done bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM job_done WHERE key = $1)`, key).Scan(&done); err != nil {
		return note(st, err)
	}
	if done {
		return job.ErrDuplicate
	}
	tag, err := tx.Exec(ctx, `INSERT INTO job_tasks (key, id, type, target, target_name, payload, state, attempts, max_attempts,
			not_before, created_at, lease_owner, lease_expiry, last_error, canceled, node)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (key) DO NOTHING`,
		key, t.ID, t.Type, strings.ToLower(t.Target), t.Target, []byte(t.Payload), t.State, t.Attempts, t.MaxAttempts,
		nanos(t.NotBefore), nanos(t.CreatedAt), t.LeaseOwner, nanos(t.LeaseExpiry), t.LastError, t.Canceled, t.Node)
	if err != nil {
		return note(st, err)
	}
	if tag.RowsAffected() == 0 {
		return job.ErrDuplicate
	}
	return nil
}

// Get implements job.Backend.
func (q *Queue) Get(ctx context.Context, st store.Tx, id string) (job.Task, error) {
	tx, err := pgTx(st)
	if err != nil {
		return job.Task{}, err
	}
	rows, err := tx.Query(ctx, `SELECT `+taskColumns+` FROM job_tasks WHERE key = $1`, strings.ToLower(id))
	if err != nil {
		return job.Task{}, note(st, err)
	}
	t, err := pgx.CollectExactlyOneRow(rows, scanTask)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("task %s: %w", id, job.ErrNoTask)
	}
	if err != nil {
		return t, note(st, err)
	}
	return t, nil
}

// Replace implements job.Backend.
func (q *Queue) Replace(ctx context.Context, st store.Tx, t job.Task) error {
	tx, err := pgTx(st)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE job_tasks SET type = $2, target = $3, target_name = $4, payload = $5, state = $6,
			attempts = $7, max_attempts = $8, not_before = $9, lease_owner = $10, lease_expiry = $11, last_error = $12, canceled = $13,
			node = $14
		WHERE key = $1`,
		strings.ToLower(t.ID), t.Type, strings.ToLower(t.Target), t.Target, []byte(t.Payload), t.State,
		t.Attempts, t.MaxAttempts, nanos(t.NotBefore), t.LeaseOwner, nanos(t.LeaseExpiry), t.LastError, t.Canceled, t.Node)
	if err != nil {
		return note(st, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("task %s: %w", t.ID, job.ErrNoTask)
	}
	return nil
}

// Finish implements job.Backend.
func (q *Queue) Finish(ctx context.Context, st store.Tx, id string, at time.Time) error {
	tx, err := pgTx(st)
	if err != nil {
		return err
	}
	key := strings.ToLower(id)
	tag, err := tx.Exec(ctx, `DELETE FROM job_tasks WHERE key = $1`, key)
	if err != nil {
		return note(st, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("task %s: %w", id, job.ErrNoTask)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO job_done (key, done_at) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET done_at = excluded.done_at`, key, nanos(at)); err != nil {
		return note(st, err)
	}
	return nil
}

// List implements job.Backend.
func (q *Queue) List(ctx context.Context, st store.Tx, target string) ([]job.Task, error) {
	tx, err := pgTx(st)
	if err != nil {
		return nil, err
	}
	stmt := `SELECT ` + taskColumns + ` FROM job_tasks`
	var args []any
	if target != "" {
		stmt += ` WHERE target = $1`
		args = append(args, strings.ToLower(target))
	}
	rows, err := tx.Query(ctx, stmt+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, note(st, fmt.Errorf("list tasks: %w", err))
	}
	ts, err := pgx.CollectRows(rows, scanTask)
	if err != nil {
		return nil, note(st, fmt.Errorf("list tasks: %w", err))
	}
	return ts, nil
}

// ForgetDone implements job.Backend: it deletes the oldest finished IDs
// before cutoff, limit at most, found through the done_at index; the
// position it returns only says that there may be more (the next call
// finds them through the index again), and from is not used.
func (q *Queue) ForgetDone(ctx context.Context, st store.Tx, cutoff time.Time, from string, limit int) (string, int, error) {
	tx, err := pgTx(st)
	if err != nil {
		return "", 0, err
	}
	var last string
	n := 0
	rows, err := tx.Query(ctx, `DELETE FROM job_done WHERE key IN
		(SELECT key FROM job_done WHERE done_at < $1 ORDER BY done_at, key LIMIT $2)
		RETURNING key`, nanos(cutoff), limit)
	if err != nil {
		return "", 0, note(st, fmt.Errorf("forget finished tasks: %w", err))
	}
	for rows.Next() {
		if err := rows.Scan(&last); err != nil {
			rows.Close()
			return "", 0, note(st, fmt.Errorf("forget finished tasks: %w", err))
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return "", 0, note(st, fmt.Errorf("forget finished tasks: %w", err))
	}
	if n < limit {
		return "", n, nil
	}
	return last, n, nil
}

// Claim implements job.Backend (see Queue).
func (q *Queue) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration) (job.Task, bool, error) {
	var (
		got   job.Task
		found bool
	)
	err := q.s.retry(ctx, func(int) error {
		found = false
		return pgx.BeginTxFunc(ctx, q.s.w, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			var err error
			got, found, err = claim(ctx, tx, owner, nanos(now), nanos(now.Add(lease)))
			return err
		})
	})
	if err != nil {
		return job.Task{}, false, fmt.Errorf("claim a task: %w", err)
	}
	return got, found, nil
}

func claim(ctx context.Context, tx pgx.Tx, owner string, now, expiry int64) (job.Task, bool, error) {
	// Ready tasks whose target shows no live lease, oldest first; rows
	// another claimer holds are skipped, not waited for.
	rows, err := tx.Query(ctx, `SELECT key, target FROM job_tasks t
		WHERE ((state = 'Pending' AND not_before <= $1) OR (state = 'Leased' AND lease_expiry <= $1))
		  AND (node = '' OR lower(node) = $3)
		  AND (target = '' OR NOT EXISTS (SELECT 1 FROM job_tasks b
			WHERE b.target = t.target AND b.state = 'Leased' AND b.lease_expiry > $1 AND b.key <> t.key))
		ORDER BY created_at, id
		LIMIT $2
		FOR UPDATE SKIP LOCKED`, now, claimBatch, strings.ToLower(job.OwnerNode(owner)))
	if err != nil {
		return job.Task{}, false, err
	}
	type candidate struct{ key, target string }
	cands, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (candidate, error) {
		var c candidate
		err := row.Scan(&c.key, &c.target)
		return c, err
	})
	if err != nil {
		return job.Task{}, false, err
	}
	for _, c := range cands {
		if c.target != "" {
			// Held until commit: a claimer of the same target that
			// gets here after us sees our lease (READ COMMITTED: each
			// statement sees what committed before it began).
			var locked, busy bool
			if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended('coffer.job.target:' || $1, 0))`,
				c.target).Scan(&locked); err != nil {
				return job.Task{}, false, err
			}
			if !locked {
				continue // another claimer is deciding about this target
			}
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM job_tasks
				WHERE target = $1 AND state = 'Leased' AND lease_expiry > $2 AND key <> $3)`, c.target, now, c.key).Scan(&busy); err != nil {
				return job.Task{}, false, err
			}
			if busy {
				continue
			}
		}
		rows, err := tx.Query(ctx, `UPDATE job_tasks SET state = 'Leased', lease_owner = $2, lease_expiry = $3, attempts = attempts + 1
			WHERE key = $1 RETURNING `+taskColumns, c.key, owner, expiry)
		if err != nil {
			return job.Task{}, false, err
		}
		t, err := pgx.CollectExactlyOneRow(rows, scanTask)
		if err != nil {
			return job.Task{}, false, err
		}
		return t, true, nil
	}
	return job.Task{}, false, nil
}

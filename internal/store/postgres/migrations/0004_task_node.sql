-- A task's node (internal/job Task.Node): when not '', only workers of
-- that node (lease owners named node/…, compared case-insensitively) claim it.
ALTER TABLE job_tasks ADD COLUMN node text NOT NULL DEFAULT '';

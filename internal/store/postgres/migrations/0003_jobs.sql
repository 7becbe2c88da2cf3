-- The job queue's tasks (internal/job; claimed with FOR UPDATE SKIP LOCKED)
-- and the IDs of finished tasks (de-duplication). Times are Unix
-- nanoseconds. key is the lower-cased task ID, target the lower-cased
-- target ('' for none). attempts counts claims: it is the lease's epoch,
-- which every ack, nack and renewal checks along with the owner.
CREATE TABLE job_tasks (
    key          text   COLLATE "C" PRIMARY KEY,
    id           text   NOT NULL,
    type         text   NOT NULL,
    target       text   COLLATE "C" NOT NULL,
    target_name  text   NOT NULL,
    payload      bytea,
    state        text   NOT NULL,
    attempts     int    NOT NULL,
    max_attempts int    NOT NULL,
    not_before   bigint NOT NULL,
    created_at   bigint NOT NULL,
    lease_owner  text   NOT NULL DEFAULT '',
    lease_expiry bigint NOT NULL DEFAULT 0,
    last_error   text   NOT NULL DEFAULT '',
    canceled     bool   NOT NULL DEFAULT false
);
CREATE INDEX job_tasks_order ON job_tasks (created_at, key);
CREATE INDEX job_tasks_leased_target ON job_tasks (target) WHERE state = 'Leased';
CREATE TABLE job_done (
    key     text   COLLATE "C" PRIMARY KEY,
    done_at bigint NOT NULL
);
CREATE INDEX job_done_at ON job_done (done_at);

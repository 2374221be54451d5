-- Several gateway instances on one database (docs/operations.md): who is alive, which periodic job ran
-- for which tick, which deadline breaches are counted, and who holds an outbox claim.

-- One row per running instance, refreshed by its heartbeat; live while last_seen is recent.
CREATE TABLE instances (
    id         text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    version    text NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL
);

-- Periodic jobs: an instance runs a tick only when its update moved next_run_at past now, so one
-- instance runs each tick however many share the database.
CREATE TABLE jobs (
    name        text PRIMARY KEY,
    next_run_at timestamptz NOT NULL,
    ran_by      text,
    ran_at      timestamptz
);

-- Deadline breaches counted in licgate_deadline_breaches_total: the instance whose insert made the row
-- counts the breach, so the sum over instances counts each once.
CREATE TABLE breaches (
    application_id text NOT NULL,
    step           text NOT NULL,
    counted_by     text NOT NULL,
    counted_at     timestamptz NOT NULL,
    PRIMARY KEY (application_id, step)
);

-- An application whose deadlines can no longer change (issued, or refused at intake) and whose breaches
-- are counted is settled: the breach sweep walks only the unsettled ones.
ALTER TABLE applications ADD COLUMN breaches_settled_at timestamptz;
CREATE INDEX applications_unsettled ON applications (provider_bin, id) WHERE breaches_settled_at IS NULL;

-- The instance holding an outbox claim (released on a graceful stop; otherwise the claim times out).
ALTER TABLE outbox ADD COLUMN claimed_by text;

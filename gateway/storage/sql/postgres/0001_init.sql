-- licgate's PostgreSQL schema, version 1. Table names are unqualified: the schema is the connection's
-- search_path (several gateways or test runs may each have their own).

-- Registration numbers: nextval is not rolled back, so a refused intake may leave a gap; numbers stay unique.
CREATE SEQUENCE registration_seq;

CREATE TABLE applications (
    id                  text PRIMARY KEY,
    registration_number text NOT NULL UNIQUE,
    provider_bin        text NOT NULL,
    sender_id           text NOT NULL,
    message_id          text NOT NULL,
    request_number      text NOT NULL,
    request_hash        text NOT NULL,
    channel             text NOT NULL,
    service_type        text NOT NULL,
    service_id          text NOT NULL,
    dialect             text NOT NULL,
    session_id          text,
    applicant           jsonb NOT NULL,
    signer              jsonb NOT NULL,
    activity_subtypes   jsonb NOT NULL,
    missing_documents   jsonb NOT NULL,
    license_number      text,
    received_at         timestamptz NOT NULL,
    due_at              timestamptz,
    status              text NOT NULL,
    last_step           text,
    decision            text,
    receipt             bytea NOT NULL,
    result              bytea,
    updated_at          timestamptz NOT NULL,
    CONSTRAINT applications_message_id_key UNIQUE (sender_id, message_id),
    CONSTRAINT applications_request_number_key UNIQUE (sender_id, request_number)
);
CREATE INDEX applications_by_provider ON applications (provider_bin, id);

-- The verified payload exactly as it arrived; apart, so reading records never touches it.
CREATE TABLE payloads (
    application_id text PRIMARY KEY REFERENCES applications (id),
    body           bytea NOT NULL
);

CREATE TABLE documents (
    application_id text NOT NULL REFERENCES applications (id),
    idx            integer NOT NULL,
    code           text NOT NULL,
    file_name      text NOT NULL,
    mime_type      text NOT NULL,
    sha256         text NOT NULL,
    size           integer NOT NULL,
    content        bytea NOT NULL,
    PRIMARY KEY (application_id, idx)
);

-- The provider queue. seq is the enqueue order; a row leaves the queue when acked. leased_until is NULL
-- until the first lease; a row is leasable when it is NULL or in the past. Leasing rewrites only
-- unindexed columns, and the free space left in each page lets those be HOT updates (no index churn).
CREATE TABLE queue (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id text NOT NULL UNIQUE REFERENCES applications (id),
    provider_bin   text NOT NULL,
    lease_id       text,
    leased_until   timestamptz
) WITH (fillfactor = 70);
-- The lease walks this index from the provider's oldest row and stops after max_items leasable rows
-- (skipping rows locked by a concurrent lease), so its cost does not grow with the queue's length.
CREATE INDEX queue_by_provider ON queue (provider_bin, seq);

CREATE TABLE steps (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id text NOT NULL REFERENCES applications (id),
    step           text NOT NULL,
    actor          text NOT NULL,
    at             timestamptz NOT NULL,
    source         text NOT NULL,
    recorded_at    timestamptz NOT NULL
);
CREATE INDEX steps_by_application ON steps (application_id, id);

-- Outbound messages; id orders the messages of an application.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id  text NOT NULL REFERENCES applications (id),
    kind            text NOT NULL,
    message_id      text NOT NULL,
    body            bytea NOT NULL,
    state           text NOT NULL DEFAULT 'PENDING',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    last_error      text,
    sent_at         timestamptz,
    claimed_until   timestamptz
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'PENDING';
CREATE INDEX outbox_unsent ON outbox (application_id, id) WHERE state <> 'SENT';
CREATE INDEX outbox_dead ON outbox (id) WHERE state = 'DEAD';

CREATE TABLE message_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    direction      text NOT NULL,
    endpoint       text NOT NULL,
    message_id     text,
    sender_id      text,
    correlation_id text,
    application_id text,
    verdict        text NOT NULL,
    body           bytea NOT NULL,
    sha256         text NOT NULL,
    at             timestamptz NOT NULL
);
CREATE INDEX message_log_by_message ON message_log (message_id, id);
CREATE INDEX message_log_by_application ON message_log (application_id, id);

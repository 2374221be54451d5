-- licgate's SQLite schema, version 1.
-- Times are integer microseconds since 1970-01-01 UTC: exact, and they compare and sort as numbers.
-- JSON columns hold the applicant, the signer and lists of codes.

-- Counters that must move in the same transaction as the rows that use them.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('registration', 0);

CREATE TABLE applications (
    id                  TEXT PRIMARY KEY,
    registration_number TEXT NOT NULL UNIQUE,
    provider_bin        TEXT NOT NULL,
    sender_id           TEXT NOT NULL,
    message_id          TEXT NOT NULL,
    request_number      TEXT NOT NULL,
    request_hash        TEXT NOT NULL,
    channel             TEXT NOT NULL,
    service_type        TEXT NOT NULL,
    service_id          TEXT NOT NULL,
    dialect             TEXT NOT NULL,
    session_id          TEXT,
    applicant           TEXT NOT NULL,
    signer              TEXT NOT NULL,
    activity_subtypes   TEXT NOT NULL,
    missing_documents   TEXT NOT NULL,
    license_number      TEXT,
    received_at         INTEGER NOT NULL,
    due_at              INTEGER,
    status              TEXT NOT NULL,
    last_step           TEXT,
    decision            TEXT,
    receipt             BLOB NOT NULL,
    result              BLOB,
    updated_at          INTEGER NOT NULL,
    CONSTRAINT applications_message_id_key UNIQUE (sender_id, message_id),
    CONSTRAINT applications_request_number_key UNIQUE (sender_id, request_number)
);
CREATE INDEX applications_by_provider ON applications (provider_bin, id);

-- The verified payload exactly as it arrived; apart, so reading records never touches its pages.
CREATE TABLE payloads (
    application_id TEXT PRIMARY KEY REFERENCES applications (id),
    body           BLOB NOT NULL
);

CREATE TABLE documents (
    application_id TEXT NOT NULL REFERENCES applications (id),
    idx            INTEGER NOT NULL,
    code           TEXT NOT NULL,
    file_name      TEXT NOT NULL,
    mime_type      TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    size           INTEGER NOT NULL,
    content        BLOB NOT NULL,
    PRIMARY KEY (application_id, idx)
);

-- The provider queue. seq is the enqueue order (the rowid); a row leaves the queue when acked.
-- leased_until is NULL until the first lease; a row is leasable when it is NULL or in the past.
CREATE TABLE queue (
    seq            INTEGER PRIMARY KEY,
    application_id TEXT NOT NULL UNIQUE REFERENCES applications (id),
    provider_bin   TEXT NOT NULL,
    lease_id       TEXT,
    leased_until   INTEGER
);
-- The lease walks this index from the provider's oldest row and stops after max_items leasable rows, so
-- its cost depends on the rows under live leases at the head, not on the length of the queue.
CREATE INDEX queue_by_provider ON queue (provider_bin, seq);

-- Queue depth per provider, kept by triggers so that asking it does not count millions of rows.
CREATE TABLE queue_depth (
    provider_bin TEXT PRIMARY KEY,
    n            INTEGER NOT NULL
);
CREATE TRIGGER queue_depth_up AFTER INSERT ON queue BEGIN
    INSERT INTO queue_depth (provider_bin, n) VALUES (NEW.provider_bin, 1)
        ON CONFLICT (provider_bin) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER queue_depth_down AFTER DELETE ON queue BEGIN
    UPDATE queue_depth SET n = n - 1 WHERE provider_bin = OLD.provider_bin;
END;

CREATE TABLE steps (
    id             INTEGER PRIMARY KEY,
    application_id TEXT NOT NULL REFERENCES applications (id),
    step           TEXT NOT NULL,
    actor          TEXT NOT NULL,
    at             INTEGER NOT NULL,
    source         TEXT NOT NULL,
    recorded_at    INTEGER NOT NULL
);
CREATE INDEX steps_by_application ON steps (application_id, id);

-- Outbound messages. id orders the messages of an application (AUTOINCREMENT: never reused).
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id  TEXT NOT NULL REFERENCES applications (id),
    kind            TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    body            BLOB NOT NULL,
    state           TEXT NOT NULL DEFAULT 'PENDING',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_error      TEXT,
    sent_at         INTEGER,
    claimed_until   INTEGER
);
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'PENDING';
CREATE INDEX outbox_unsent ON outbox (application_id, id) WHERE state <> 'SENT';
CREATE INDEX outbox_dead ON outbox (id) WHERE state = 'DEAD';

CREATE TABLE message_log (
    id             INTEGER PRIMARY KEY,
    direction      TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    message_id     TEXT,
    sender_id      TEXT,
    correlation_id TEXT,
    application_id TEXT,
    verdict        TEXT NOT NULL,
    body           BLOB NOT NULL,
    sha256         TEXT NOT NULL,
    at             INTEGER NOT NULL
);
CREATE INDEX message_log_by_message ON message_log (message_id, id);
CREATE INDEX message_log_by_application ON message_log (application_id, id);

-- licgate's named queries for SQLite. Parameters are :named; a list of ids is one JSON array parameter.

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at INTEGER NOT NULL
);

-- name: migrations_applied
SELECT version FROM schema_migrations ORDER BY version;

-- name: migration_record
INSERT INTO schema_migrations (version, name, applied_at) VALUES (:version, :name, :applied_at);

-- name: ping
SELECT count(*) AS n FROM schema_migrations;

-- name: next_registration_number
UPDATE counters SET value = value + 1 WHERE name = 'registration' RETURNING value;

-- name: next_registration_numbers
-- The last of :count new values; the batch takes the range ending there.
UPDATE counters SET value = value + :count WHERE name = 'registration' RETURNING value;

-- name: insert_application
INSERT INTO applications (
    id, registration_number, provider_bin, sender_id, message_id, request_number, request_hash, channel,
    service_type, service_id, dialect, session_id, applicant, signer, activity_subtypes, missing_documents,
    license_number, received_at, due_at, status, receipt, updated_at
) VALUES (
    :id, :registration_number, :provider_bin, :sender_id, :message_id, :request_number, :request_hash, :channel,
    :service_type, :service_id, :dialect, :session_id, :applicant, :signer, :activity_subtypes, :missing_documents,
    :license_number, :received_at, :due_at, :status, :receipt, :updated_at
);

-- name: insert_payload
INSERT INTO payloads (application_id, body) VALUES (:application_id, :body);

-- name: insert_document
INSERT INTO documents (application_id, idx, code, file_name, mime_type, sha256, size, content)
VALUES (:application_id, :idx, :code, :file_name, :mime_type, :sha256, :size, :content);

-- Large blobs are inserted as zeroblobs and then written through incremental blob I/O (no bound copy).
-- name: insert_payload_zeroblob
INSERT INTO payloads (application_id, body) VALUES (:application_id, zeroblob(:body_size));

-- name: insert_document_zeroblob
INSERT INTO documents (application_id, idx, code, file_name, mime_type, sha256, size, content)
VALUES (:application_id, :idx, :code, :file_name, :mime_type, :sha256, :size, zeroblob(:content_size));

-- name: enqueue
INSERT INTO queue (application_id, provider_bin) VALUES (:application_id, :provider_bin);

-- name: application_by_id
SELECT * FROM applications WHERE id = :id;

-- name: applications_by_ids
SELECT * FROM applications WHERE id IN (SELECT value FROM json_each(:ids));

-- name: find_by_message_id
SELECT * FROM applications WHERE sender_id = :sender_id AND message_id = :value;

-- name: find_by_request_number
SELECT * FROM applications WHERE sender_id = :sender_id AND request_number = :value;

-- name: find_duplicate
-- Both unique keys of an intake in one round trip, each branch a unique-index look-up; a match on
-- message_id comes first.
SELECT * FROM (
    SELECT *, 1 AS match_rank FROM applications
    WHERE sender_id = :sender_id AND message_id = :message_id
    UNION ALL
    SELECT *, 2 AS match_rank FROM applications
    WHERE sender_id = :sender_id AND request_number = :request_number
) AS found
ORDER BY match_rank
LIMIT 1;

-- name: find_by_registration_number
SELECT * FROM applications WHERE registration_number = :registration_number;

-- name: documents_of
SELECT application_id, idx, code, file_name, mime_type, sha256, size
FROM documents
WHERE application_id IN (SELECT value FROM json_each(:ids))
ORDER BY application_id, idx;

-- name: document
SELECT idx, code, file_name, mime_type, sha256, size, content
FROM documents
WHERE application_id = :application_id AND idx = :idx;

-- name: payload
SELECT body FROM payloads WHERE application_id = :application_id;

-- name: list_applications
SELECT * FROM applications
WHERE provider_bin = :provider_bin
  AND id > :after_id
  AND status NOT IN (SELECT value FROM json_each(:final))
ORDER BY id
LIMIT :limit;

-- name: lease
UPDATE queue SET lease_id = :lease_id, leased_until = :until
WHERE seq IN (
    SELECT seq FROM queue
    WHERE provider_bin = :provider_bin AND (leased_until IS NULL OR leased_until <= :now)
    ORDER BY seq
    LIMIT :max_items
)
RETURNING application_id, seq;

-- name: ack
-- CROSS JOIN fixes the join order: look each id up in the queue, never walk the provider's rows.
DELETE FROM queue
WHERE seq IN (
    SELECT q.seq FROM json_each(:ids) AS j CROSS JOIN queue AS q ON q.application_id = j.value
    WHERE q.provider_bin = :provider_bin AND q.lease_id = :lease_id
)
RETURNING application_id;

-- name: queue_depth
SELECT coalesce(sum(n), 0) AS n FROM queue_depth WHERE provider_bin = :provider_bin;

-- name: queue_depth_all
SELECT coalesce(sum(n), 0) AS n FROM queue_depth;

-- name: advance_application
UPDATE applications
SET last_step = :step,
    status = coalesce(:status, status),
    decision = coalesce(:decision, decision),
    result = coalesce(:result, result),
    updated_at = :updated_at
WHERE id = :id AND last_step IS :expected;

-- name: last_step_of
SELECT last_step FROM applications WHERE id = :id;

-- name: insert_step
INSERT INTO steps (application_id, step, actor, at, source, recorded_at)
VALUES (:application_id, :step, :actor, :at, :source, :recorded_at);

-- name: timeline
SELECT step, actor, at, source, recorded_at FROM steps WHERE application_id = :application_id ORDER BY id;

-- name: insert_outbox
INSERT INTO outbox (application_id, kind, message_id, body, next_attempt_at, created_at)
VALUES (:application_id, :kind, :message_id, :body, :next_attempt_at, :created_at);

-- name: claim_outbox
-- Only the oldest unsent message of an application may be claimed (delivery in order, DEAD blocks).
UPDATE outbox SET claimed_until = :until
WHERE id IN (
    SELECT o.id FROM outbox AS o
    WHERE o.state = 'PENDING'
      AND o.next_attempt_at <= :now
      AND (o.claimed_until IS NULL OR o.claimed_until <= :now)
      AND NOT EXISTS (
          SELECT 1 FROM outbox AS p
          WHERE p.application_id = o.application_id AND p.state <> 'SENT' AND p.id < o.id
      )
    ORDER BY o.next_attempt_at, o.id
    LIMIT :limit
)
RETURNING *;

-- name: outbox_sent
UPDATE outbox SET state = 'SENT', sent_at = :now, claimed_until = NULL
WHERE id = :id AND state = 'PENDING';

-- name: outbox_failed
UPDATE outbox
SET attempts = attempts + 1, last_error = :error, next_attempt_at = :next_attempt_at, state = :state,
    claimed_until = NULL
WHERE id = :id AND state = 'PENDING';

-- name: outbox_of
SELECT * FROM outbox WHERE application_id = :application_id ORDER BY id;

-- name: dead_letters
SELECT * FROM outbox WHERE state = 'DEAD' ORDER BY id LIMIT :limit;

-- name: retry_dead_letter
UPDATE outbox SET state = 'PENDING', attempts = 0, next_attempt_at = :now, claimed_until = NULL
WHERE id = :id AND state = 'DEAD';

-- name: outbox_backlog
SELECT count(*) AS n FROM outbox WHERE state = 'PENDING';

-- name: insert_log
INSERT INTO message_log (direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict,
                         body, sha256, at)
VALUES (:direction, :endpoint, :message_id, :sender_id, :correlation_id, :application_id, :verdict,
        :body, :sha256, :at);

-- body is the last column (migration 2): SQLite writes the zeroblob page by page without allocating it.
-- name: insert_log_zeroblob
INSERT INTO message_log (direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict,
                         body, sha256, at)
VALUES (:direction, :endpoint, :message_id, :sender_id, :correlation_id, :application_id, :verdict,
        zeroblob(:body_size), :sha256, :at);

-- name: log_by_message
SELECT * FROM message_log WHERE message_id = :message_id ORDER BY id DESC LIMIT :limit;

-- name: log_by_application
SELECT * FROM message_log WHERE application_id = :application_id ORDER BY id DESC LIMIT :limit;

-- name: log_by_message_and_application
SELECT * FROM message_log
WHERE message_id = :message_id AND application_id = :application_id
ORDER BY id DESC LIMIT :limit;

-- name: log_latest
SELECT * FROM message_log ORDER BY id DESC LIMIT :limit;

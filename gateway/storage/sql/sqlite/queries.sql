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
    updated_at = :updated_at,
    breach_check_at = NULL
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
UPDATE outbox SET claimed_until = :until, claimed_by = :holder
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

-- The operators' search of the message log (no bodies: length(body) is read from the record's header, not its
-- content). The most selective key given walks its index newest first; the other filters narrow.
-- name: search_log_by_message
SELECT id, direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict, sha256, at, length(body) AS size FROM message_log
WHERE message_id = :message_id
  AND (:application_id IS NULL OR application_id = :application_id)
  AND (:sender_id IS NULL OR sender_id = :sender_id) AND (:verdict IS NULL OR verdict = :verdict)
  AND (:since IS NULL OR at >= :since) AND (:until IS NULL OR at < :until)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC LIMIT :limit;

-- name: search_log_by_application
SELECT id, direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict, sha256, at, length(body) AS size FROM message_log
WHERE application_id = :application_id
  AND (:sender_id IS NULL OR sender_id = :sender_id) AND (:verdict IS NULL OR verdict = :verdict)
  AND (:since IS NULL OR at >= :since) AND (:until IS NULL OR at < :until)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC LIMIT :limit;

-- name: search_log
SELECT id, direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict, sha256, at, length(body) AS size FROM message_log
WHERE TRUE
  AND (:sender_id IS NULL OR sender_id = :sender_id) AND (:verdict IS NULL OR verdict = :verdict)
  AND (:since IS NULL OR at >= :since) AND (:until IS NULL OR at < :until)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC LIMIT :limit;

-- name: log_entry
SELECT * FROM message_log WHERE id = :id;

-- -- operators --------------------------------------------------------------------------------------------
-- The searches share their filters: status and channel when given, and "overdue": past the term and not final.

-- name: search_by_iin
SELECT * FROM applications
WHERE json_extract(applicant, '$.iin') = :key
  AND (:status IS NULL OR status = :status) AND (:channel IS NULL OR channel = :channel)
  AND (:overdue = 0 OR (due_at < :now AND status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')))
ORDER BY received_at DESC LIMIT :limit;

-- name: search_by_bin
SELECT * FROM applications
WHERE json_extract(applicant, '$.bin') = :key
  AND (:status IS NULL OR status = :status) AND (:channel IS NULL OR channel = :channel)
  AND (:overdue = 0 OR (due_at < :now AND status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')))
ORDER BY received_at DESC LIMIT :limit;

-- name: search_by_request_number
SELECT * FROM applications
WHERE request_number = :key
  AND (:status IS NULL OR status = :status) AND (:channel IS NULL OR channel = :channel)
  AND (:overdue = 0 OR (due_at < :now AND status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')))
ORDER BY received_at DESC LIMIT :limit;

-- name: search_overdue
SELECT * FROM applications
WHERE due_at < :now AND status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')
  AND (:status IS NULL OR status = :status) AND (:channel IS NULL OR channel = :channel)
ORDER BY due_at LIMIT :limit;

-- name: search_recent
SELECT * FROM applications
WHERE (:status IS NULL OR status = :status) AND (:channel IS NULL OR channel = :channel)
ORDER BY received_at DESC LIMIT :limit;

-- name: queue_stats
SELECT d.provider_bin, d.n,
       (SELECT a.received_at FROM queue AS q JOIN applications AS a ON a.id = q.application_id
        WHERE q.provider_bin = d.provider_bin ORDER BY q.seq LIMIT 1) AS oldest_received_at
FROM (SELECT provider_bin, sum(n) AS n FROM queue_depth GROUP BY provider_bin) AS d
ORDER BY d.provider_bin;

-- name: outbox_pending_stats
SELECT (SELECT count(*) FROM outbox WHERE state = 'PENDING') AS pending,
       (SELECT created_at FROM outbox WHERE state = 'PENDING' ORDER BY id LIMIT 1) AS oldest_pending_at;

-- name: outbox_dead_by_kind
SELECT kind, count(*) AS n FROM outbox WHERE state = 'DEAD' GROUP BY kind ORDER BY kind;

-- name: outbox_by_id
SELECT * FROM outbox WHERE id = :id;

-- name: retry_all_dead_letters
UPDATE outbox SET state = 'PENDING', attempts = 0, next_attempt_at = :now, claimed_until = NULL
WHERE state = 'DEAD'
RETURNING id, application_id;

-- name: insert_session
INSERT INTO operator_sessions (token_hash, operator, created_at, expires_at)
VALUES (:token_hash, :operator, :created_at, :expires_at);

-- name: session_operator
SELECT operator FROM operator_sessions WHERE token_hash = :token_hash AND expires_at > :now;

-- name: delete_session
DELETE FROM operator_sessions WHERE token_hash = :token_hash;

-- name: delete_expired_sessions
DELETE FROM operator_sessions WHERE expires_at <= :now;

-- name: lockout_of
SELECT failures, locked_until FROM operator_lockouts WHERE operator = :operator;

-- name: lockout_failed
INSERT INTO operator_lockouts (operator, failures, locked_until) VALUES (:operator, 1, NULL)
ON CONFLICT (operator) DO UPDATE SET failures = operator_lockouts.failures + 1
RETURNING failures;

-- name: lockout_lock
UPDATE operator_lockouts SET locked_until = :until, failures = 0 WHERE operator = :operator;

-- name: lockout_clear
DELETE FROM operator_lockouts WHERE operator = :operator;
-- name: heartbeat
INSERT INTO instances (id, host, pid, version, started_at, last_seen)
VALUES (:id, :host, :pid, :version, :started_at, :now)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen;

-- name: live_instances
SELECT * FROM instances WHERE last_seen >= :since ORDER BY started_at, id;

-- name: remove_instance
DELETE FROM instances WHERE id = :id;

-- name: forget_instances
DELETE FROM instances WHERE last_seen < :before;

-- name: claim_job
-- Inserted on the first tick ever; afterwards moved on only by the one instance that finds it due.
INSERT INTO jobs (name, next_run_at, ran_by, ran_at) VALUES (:name, :next_run_at, :holder, :now)
ON CONFLICT (name) DO UPDATE SET next_run_at = excluded.next_run_at, ran_by = excluded.ran_by,
                                 ran_at = excluded.ran_at
WHERE jobs.next_run_at <= :now
RETURNING name;

-- name: applications_to_check
SELECT * FROM applications
WHERE provider_bin = :provider_bin AND breaches_settled_at IS NULL AND id > :after_id
  AND (breach_check_at IS NULL OR breach_check_at <= :now)
ORDER BY id
LIMIT :limit;

-- name: timelines_of
SELECT application_id, step, actor, at, source, recorded_at
FROM steps
WHERE application_id IN (SELECT value FROM json_each(:ids))
ORDER BY application_id, id;

-- name: breaches_counted
SELECT application_id, step FROM breaches WHERE application_id IN (SELECT value FROM json_each(:ids));

-- name: count_breach
INSERT INTO breaches (application_id, step, counted_by, counted_at) VALUES (:application_id, :step, :holder, :now)
ON CONFLICT (application_id, step) DO NOTHING
RETURNING application_id, step;

-- name: set_breach_check
UPDATE applications SET breach_check_at = :at WHERE id = :id;

-- name: settle_breaches
UPDATE applications SET breaches_settled_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND breaches_settled_at IS NULL;

-- name: release_outbox_claims
UPDATE outbox SET claimed_until = NULL, claimed_by = NULL
WHERE claimed_by = :holder AND state = 'PENDING' AND claimed_until IS NOT NULL;

-- -- audit (docs/audit.md) -----------------------------------------------------------------------------

-- name: audit_head
SELECT log_id, seq, chain_hash FROM audit_head WHERE id = 1;

-- The sequencer's lock: one sequencer at a time across instances; another finds the row locked and goes.
-- name: audit_head_lock
SELECT log_id, seq, chain_hash FROM audit_head WHERE id = 1;

-- name: audit_head_set
UPDATE audit_head SET seq = :seq, chain_hash = :chain_hash WHERE id = 1;

-- name: log_pending_batch
SELECT m.id, m.direction, m.endpoint, m.message_id, m.sender_id, m.correlation_id, m.application_id, m.verdict,
       m.sha256, m.at
FROM log_pending p JOIN message_log m ON m.id = p.log_id
ORDER BY p.log_id LIMIT :limit;

-- name: log_pending_delete
DELETE FROM log_pending WHERE log_id IN (SELECT value FROM json_each(:ids));

-- name: log_pending_count
SELECT count(*) AS n FROM log_pending;

-- name: log_chain_insert
INSERT INTO log_chain (seq, log_id, chain_hash) VALUES (:seq, :log_id, :chain_hash);

-- name: audit_records
SELECT c.seq, c.chain_hash, c.log_id, m.id AS present, m.direction, m.endpoint, m.message_id, m.sender_id,
       m.correlation_id, m.application_id, m.verdict, m.body, m.sha256, m.at, p.log_id IS NOT NULL AS purged
FROM log_chain c LEFT JOIN message_log m ON m.id = c.log_id LEFT JOIN log_purged p ON p.log_id = c.log_id
WHERE c.seq > :after AND c.seq <= :upto ORDER BY c.seq LIMIT :limit;

-- name: audit_records_of_application
SELECT c.seq, c.chain_hash, c.log_id, m.id AS present, m.direction, m.endpoint, m.message_id, m.sender_id,
       m.correlation_id, m.application_id, m.verdict, m.body, m.sha256, m.at, p.log_id IS NOT NULL AS purged
FROM message_log m JOIN log_chain c ON c.log_id = m.id LEFT JOIN log_purged p ON p.log_id = c.log_id
WHERE m.application_id = :application_id ORDER BY c.seq;

-- name: audit_links
SELECT c.seq, c.chain_hash, m.id AS present, m.direction, m.endpoint, m.message_id, m.sender_id, m.correlation_id,
       m.application_id, m.verdict, m.sha256, m.at
FROM log_chain c LEFT JOIN message_log m ON m.id = c.log_id
WHERE c.seq >= :lo AND c.seq <= :hi ORDER BY c.seq;

-- name: chain_hash_at
SELECT chain_hash FROM log_chain WHERE seq = :seq;

-- name: record_time_at
SELECT m.at FROM log_chain c JOIN message_log m ON m.id = c.log_id WHERE c.seq = :seq;

-- name: checkpoints_all
SELECT id, size, root, at, note, timestamp_token FROM audit_checkpoints ORDER BY size;

-- name: checkpoint_last
SELECT id, size, root, at, note, timestamp_token FROM audit_checkpoints ORDER BY size DESC LIMIT 1;

-- name: checkpoint_covering
SELECT id, size, root, at, note, timestamp_token FROM audit_checkpoints WHERE size >= :size
ORDER BY size LIMIT 1;

-- name: checkpoint_count
SELECT count(*) AS n FROM audit_checkpoints;

-- name: checkpoint_insert
INSERT INTO audit_checkpoints (size, root, at, note) VALUES (:size, :root, :at, :note) RETURNING id;

-- name: checkpoint_token
UPDATE audit_checkpoints SET timestamp_token = :token WHERE id = :id;

-- name: seal_certs
SELECT cert_pem FROM audit_seal_certs ORDER BY id;

-- name: seal_cert_put
INSERT INTO audit_seal_certs (cert_pem, created_at) VALUES (:cert_pem, :now);

-- Records of finished applications older than `before` whose body is still there.
-- name: purgeable_log
SELECT m.id FROM message_log m JOIN applications a ON a.id = m.application_id
WHERE m.at < :before AND a.status IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')
  AND NOT EXISTS (SELECT 1 FROM log_purged p WHERE p.log_id = m.id)
ORDER BY m.id LIMIT :limit;

-- name: purge_log_bodies
UPDATE message_log SET body = x'' WHERE id IN (SELECT value FROM json_each(:ids));

-- name: purge_log_mark
INSERT INTO log_purged (log_id, purged_at) SELECT value, :now FROM json_each(:ids) WHERE true ON CONFLICT DO NOTHING;

-- name: purge_documents
UPDATE documents SET content = x''
WHERE application_id IN (SELECT id FROM applications
                         WHERE received_at < :before AND status IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED'))
  AND length(content) > 0;

-- name: purge_payloads
UPDATE payloads SET body = x''
WHERE application_id IN (SELECT id FROM applications
                         WHERE received_at < :before AND status IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED'))
  AND length(body) > 0;

-- name: log_with_secrets
SELECT id FROM message_log
WHERE instr(body, CAST('assword' AS BLOB)) > 0 OR instr(body, CAST('earer' AS BLOB)) > 0
   OR instr(body, CAST('licgate_session' AS BLOB)) > 0;

-- The outbox rows whose envelope may carry the gateway's SHEP password (stored before it was left out).
-- name: outbox_with_secrets
SELECT id FROM outbox WHERE instr(body, CAST('<password>' AS BLOB)) > 0;

-- name: outbox_body
SELECT body FROM outbox WHERE id = :id;

-- name: outbox_rewrite
UPDATE outbox SET body = :body WHERE id = :id;

-- name: log_body
SELECT body FROM message_log WHERE id = :id;

-- name: log_rewrite
UPDATE message_log SET body = :body, sha256 = :sha256 WHERE id = :id;
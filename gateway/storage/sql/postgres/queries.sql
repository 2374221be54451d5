-- licgate's named queries for PostgreSQL. Parameters are %(named)s; a list of ids is one text[] parameter.

-- name: migrate_lock
-- Held until the migrating transaction ends: two processes starting together migrate one after the other.
-- Keyed by schema, so that gateways (and test runs) in different schemas do not wait for each other.
SELECT pg_advisory_xact_lock(hashtext('licgate-migrate:' || coalesce(current_schema(), '')));

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL
);

-- name: migrations_applied
SELECT version FROM schema_migrations ORDER BY version;

-- name: migration_record
INSERT INTO schema_migrations (version, name, applied_at) VALUES (%(version)s, %(name)s, %(applied_at)s);

-- name: ping
SELECT count(*) AS n FROM schema_migrations;

-- name: next_registration_number
SELECT nextval('registration_seq') AS value;

-- name: next_registration_numbers
SELECT nextval('registration_seq') AS value FROM generate_series(1, %(count)s) ORDER BY 1;

-- name: insert_application
INSERT INTO applications (
    id, registration_number, provider_bin, sender_id, message_id, request_number, request_hash, channel,
    service_type, service_id, dialect, session_id, applicant, signer, activity_subtypes, missing_documents,
    license_number, received_at, due_at, status, receipt, updated_at
) VALUES (
    %(id)s, %(registration_number)s, %(provider_bin)s, %(sender_id)s, %(message_id)s, %(request_number)s, %(request_hash)s, %(channel)s,
    %(service_type)s, %(service_id)s, %(dialect)s, %(session_id)s, %(applicant)s, %(signer)s, %(activity_subtypes)s, %(missing_documents)s,
    %(license_number)s, %(received_at)s, %(due_at)s, %(status)s, %(receipt)s, %(updated_at)s
);

-- name: insert_payload
INSERT INTO payloads (application_id, body) VALUES (%(application_id)s, %(body)s);

-- name: insert_document
INSERT INTO documents (application_id, idx, code, file_name, mime_type, sha256, size, content)
VALUES (%(application_id)s, %(idx)s, %(code)s, %(file_name)s, %(mime_type)s, %(sha256)s, %(size)s, %(content)s);

-- name: enqueue
INSERT INTO queue (application_id, provider_bin) VALUES (%(application_id)s, %(provider_bin)s);

-- name: application_by_id
SELECT * FROM applications WHERE id = %(id)s;

-- name: applications_by_ids
SELECT * FROM applications WHERE id = ANY(%(ids)s);

-- name: find_by_message_id
SELECT * FROM applications WHERE sender_id = %(sender_id)s AND message_id = %(value)s;

-- name: find_by_request_number
SELECT * FROM applications WHERE sender_id = %(sender_id)s AND request_number = %(value)s;

-- name: find_duplicate
-- Both unique keys of an intake in one round trip, each branch a unique-index look-up; a match on
-- message_id comes first.
SELECT * FROM (
    SELECT *, 1 AS match_rank FROM applications
    WHERE sender_id = %(sender_id)s AND message_id = %(message_id)s
    UNION ALL
    SELECT *, 2 AS match_rank FROM applications
    WHERE sender_id = %(sender_id)s AND request_number = %(request_number)s
) AS found
ORDER BY match_rank
LIMIT 1;

-- name: find_duplicates
-- `find_duplicate` for a batch in one round trip: `item` is the 1-based place of the intake the row matches
-- (an application may match on its messageId and on its requestNumber: the caller keeps rank 1 first).
-- Each branch joins on a unique index.
SELECT a.*, k.item, 1 AS match_rank
FROM unnest(%(senders)s::text[], %(message_ids)s::text[]) WITH ORDINALITY AS k(sender_id, message_id, item)
JOIN applications a ON a.sender_id = k.sender_id AND a.message_id = k.message_id
UNION ALL
SELECT a.*, k.item, 2 AS match_rank
FROM unnest(%(senders)s::text[], %(request_numbers)s::text[]) WITH ORDINALITY AS k(sender_id, request_number, item)
JOIN applications a ON a.sender_id = k.sender_id AND a.request_number = k.request_number;

-- name: find_by_registration_number
SELECT * FROM applications WHERE registration_number = %(registration_number)s;

-- name: documents_of
SELECT application_id, idx, code, file_name, mime_type, sha256, size
FROM documents
WHERE application_id = ANY(%(ids)s)
ORDER BY application_id, idx;

-- name: document
SELECT idx, code, file_name, mime_type, sha256, size, content
FROM documents
WHERE application_id = %(application_id)s AND idx = %(idx)s;

-- name: payload
SELECT body FROM payloads WHERE application_id = %(application_id)s;

-- name: list_applications
SELECT * FROM applications
WHERE provider_bin = %(provider_bin)s
  AND id > %(after_id)s
  AND status <> ALL(%(final)s)
ORDER BY id
LIMIT %(limit)s;

-- name: lease
-- SKIP LOCKED: rows another transaction is leasing right now are passed over, not waited for; when that
-- transaction commits they carry a live lease, so no two leases ever hold one application.
UPDATE queue AS q SET lease_id = %(lease_id)s, leased_until = %(until)s
FROM (
    SELECT seq FROM queue
    WHERE provider_bin = %(provider_bin)s AND (leased_until IS NULL OR leased_until <= %(now)s)
    ORDER BY seq
    LIMIT %(max_items)s
    FOR UPDATE SKIP LOCKED
) AS pick
WHERE q.seq = pick.seq
RETURNING q.application_id, q.seq;

-- name: ack
DELETE FROM queue
WHERE application_id = ANY(%(ids)s) AND provider_bin = %(provider_bin)s AND lease_id = %(lease_id)s
RETURNING application_id;

-- name: queue_depth
SELECT coalesce(sum(n), 0) AS n FROM queue_depth WHERE provider_bin = %(provider_bin)s;

-- name: queue_depth_all
SELECT coalesce(sum(n), 0) AS n FROM queue_depth;

-- name: advance_application
UPDATE applications
SET last_step = %(step)s,
    status = coalesce(%(status)s, status),
    decision = coalesce(%(decision)s, decision),
    result = coalesce(%(result)s, result),
    updated_at = %(updated_at)s,
    breach_check_at = NULL
WHERE id = %(id)s AND last_step IS NOT DISTINCT FROM %(expected)s;

-- name: last_step_of
SELECT last_step FROM applications WHERE id = %(id)s;

-- name: insert_step
INSERT INTO steps (application_id, step, actor, at, source, recorded_at)
VALUES (%(application_id)s, %(step)s, %(actor)s, %(at)s, %(source)s, %(recorded_at)s);

-- name: timeline
SELECT step, actor, at, source, recorded_at FROM steps WHERE application_id = %(application_id)s ORDER BY id;

-- name: insert_outbox
INSERT INTO outbox (application_id, kind, message_id, body, next_attempt_at, created_at)
VALUES (%(application_id)s, %(kind)s, %(message_id)s, %(body)s, %(next_attempt_at)s, %(created_at)s);

-- name: claim_outbox
-- Only the oldest unsent message of an application may be claimed (delivery in order, DEAD blocks).
UPDATE outbox AS u SET claimed_until = %(until)s, claimed_by = %(holder)s
FROM (
    SELECT o.id FROM outbox AS o
    WHERE o.state = 'PENDING'
      AND o.next_attempt_at <= %(now)s
      AND (o.claimed_until IS NULL OR o.claimed_until <= %(now)s)
      AND NOT EXISTS (
          SELECT 1 FROM outbox AS p
          WHERE p.application_id = o.application_id AND p.state <> 'SENT' AND p.id < o.id
      )
    ORDER BY o.next_attempt_at, o.id
    LIMIT %(limit)s
    FOR UPDATE OF o SKIP LOCKED
) AS pick
WHERE u.id = pick.id
RETURNING u.*;

-- name: outbox_sent
UPDATE outbox SET state = 'SENT', sent_at = %(now)s, claimed_until = NULL
WHERE id = %(id)s AND state = 'PENDING';

-- name: outbox_failed
UPDATE outbox
SET attempts = attempts + 1, last_error = %(error)s, next_attempt_at = %(next_attempt_at)s, state = %(state)s,
    claimed_until = NULL
WHERE id = %(id)s AND state = 'PENDING';

-- name: outbox_of
SELECT * FROM outbox WHERE application_id = %(application_id)s ORDER BY id;

-- name: dead_letters
SELECT * FROM outbox WHERE state = 'DEAD' ORDER BY id LIMIT %(limit)s;

-- name: retry_dead_letter
UPDATE outbox SET state = 'PENDING', attempts = 0, next_attempt_at = %(now)s, claimed_until = NULL
WHERE id = %(id)s AND state = 'DEAD';

-- name: outbox_backlog
SELECT count(*) AS n FROM outbox WHERE state = 'PENDING';

-- name: insert_log
INSERT INTO message_log (direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict,
                         body, sha256, at)
VALUES (%(direction)s, %(endpoint)s, %(message_id)s, %(sender_id)s, %(correlation_id)s, %(application_id)s, %(verdict)s,
        %(body)s, %(sha256)s, %(at)s);

-- name: log_by_message
SELECT * FROM message_log WHERE message_id = %(message_id)s ORDER BY id DESC LIMIT %(limit)s;

-- name: log_by_application
SELECT * FROM message_log WHERE application_id = %(application_id)s ORDER BY id DESC LIMIT %(limit)s;

-- name: log_by_message_and_application
SELECT * FROM message_log
WHERE message_id = %(message_id)s AND application_id = %(application_id)s
ORDER BY id DESC LIMIT %(limit)s;

-- name: log_latest
SELECT * FROM message_log ORDER BY id DESC LIMIT %(limit)s;

-- The operators' search of the message log (no bodies: octet_length(body) is read from the record's header, not its
-- content). The most selective key given walks its index newest first; the other filters narrow.
-- name: search_log_by_message
SELECT id, direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict, sha256, at, octet_length(body) AS size FROM message_log
WHERE message_id = %(message_id)s
  AND (%(application_id)s::text IS NULL OR application_id = %(application_id)s)
  AND (%(sender_id)s::text IS NULL OR sender_id = %(sender_id)s) AND (%(verdict)s::text IS NULL OR verdict = %(verdict)s)
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s) AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC LIMIT %(limit)s;

-- name: search_log_by_application
SELECT id, direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict, sha256, at, octet_length(body) AS size FROM message_log
WHERE application_id = %(application_id)s
  AND (%(sender_id)s::text IS NULL OR sender_id = %(sender_id)s) AND (%(verdict)s::text IS NULL OR verdict = %(verdict)s)
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s) AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC LIMIT %(limit)s;

-- name: search_log
SELECT id, direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict, sha256, at, octet_length(body) AS size FROM message_log
WHERE TRUE
  AND (%(sender_id)s::text IS NULL OR sender_id = %(sender_id)s) AND (%(verdict)s::text IS NULL OR verdict = %(verdict)s)
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s) AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC LIMIT %(limit)s;

-- name: log_entry
SELECT * FROM message_log WHERE id = %(id)s;

-- -- operators --------------------------------------------------------------------------------------------
-- The searches share their filters: status and channel when given, and "overdue": past the term and not final.

-- name: search_by_iin
SELECT * FROM applications
WHERE (applicant ->> 'iin') = %(key)s
  AND (%(status)s::text IS NULL OR status = %(status)s) AND (%(channel)s::text IS NULL OR channel = %(channel)s)
  AND (NOT %(overdue)s OR (due_at < %(now)s AND status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')))
ORDER BY received_at DESC LIMIT %(limit)s;

-- name: search_by_bin
SELECT * FROM applications
WHERE (applicant ->> 'bin') = %(key)s
  AND (%(status)s::text IS NULL OR status = %(status)s) AND (%(channel)s::text IS NULL OR channel = %(channel)s)
  AND (NOT %(overdue)s OR (due_at < %(now)s AND status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')))
ORDER BY received_at DESC LIMIT %(limit)s;

-- name: search_by_request_number
SELECT * FROM applications
WHERE request_number = %(key)s
  AND (%(status)s::text IS NULL OR status = %(status)s) AND (%(channel)s::text IS NULL OR channel = %(channel)s)
  AND (NOT %(overdue)s OR (due_at < %(now)s AND status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')))
ORDER BY received_at DESC LIMIT %(limit)s;

-- name: search_overdue
SELECT * FROM applications
WHERE due_at < %(now)s AND status NOT IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')
  AND (%(status)s::text IS NULL OR status = %(status)s) AND (%(channel)s::text IS NULL OR channel = %(channel)s)
ORDER BY due_at LIMIT %(limit)s;

-- name: search_recent
SELECT * FROM applications
WHERE (%(status)s::text IS NULL OR status = %(status)s) AND (%(channel)s::text IS NULL OR channel = %(channel)s)
ORDER BY received_at DESC LIMIT %(limit)s;

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
SELECT * FROM outbox WHERE id = %(id)s;

-- name: retry_all_dead_letters
UPDATE outbox SET state = 'PENDING', attempts = 0, next_attempt_at = %(now)s, claimed_until = NULL
WHERE state = 'DEAD'
RETURNING id, application_id;

-- name: insert_session
INSERT INTO operator_sessions (token_hash, operator, created_at, expires_at)
VALUES (%(token_hash)s, %(operator)s, %(created_at)s, %(expires_at)s);

-- name: session_operator
SELECT operator FROM operator_sessions WHERE token_hash = %(token_hash)s AND expires_at > %(now)s;

-- name: delete_session
DELETE FROM operator_sessions WHERE token_hash = %(token_hash)s;

-- name: delete_expired_sessions
DELETE FROM operator_sessions WHERE expires_at <= %(now)s;

-- name: lockout_of
SELECT failures, locked_until FROM operator_lockouts WHERE operator = %(operator)s;

-- name: lockout_failed
INSERT INTO operator_lockouts (operator, failures, locked_until) VALUES (%(operator)s, 1, NULL)
ON CONFLICT (operator) DO UPDATE SET failures = operator_lockouts.failures + 1
RETURNING failures;

-- name: lockout_lock
UPDATE operator_lockouts SET locked_until = %(until)s, failures = 0 WHERE operator = %(operator)s;

-- name: lockout_clear
DELETE FROM operator_lockouts WHERE operator = %(operator)s;
-- name: heartbeat
INSERT INTO instances (id, host, pid, version, started_at, last_seen)
VALUES (%(id)s, %(host)s, %(pid)s, %(version)s, %(started_at)s, %(now)s)
ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen;

-- name: live_instances
SELECT * FROM instances WHERE last_seen >= %(since)s ORDER BY started_at, id;

-- name: remove_instance
DELETE FROM instances WHERE id = %(id)s;

-- name: forget_instances
DELETE FROM instances WHERE last_seen < %(before)s;

-- name: claim_job
-- Inserted on the first tick ever; afterwards moved on only by the one instance that finds it due.
INSERT INTO jobs (name, next_run_at, ran_by, ran_at) VALUES (%(name)s, %(next_run_at)s, %(holder)s, %(now)s)
ON CONFLICT (name) DO UPDATE SET next_run_at = EXCLUDED.next_run_at, ran_by = EXCLUDED.ran_by,
                                 ran_at = EXCLUDED.ran_at
WHERE jobs.next_run_at <= %(now)s
RETURNING name;

-- name: applications_to_check
SELECT * FROM applications
WHERE provider_bin = %(provider_bin)s AND breaches_settled_at IS NULL AND id > %(after_id)s
  AND (breach_check_at IS NULL OR breach_check_at <= %(now)s)
ORDER BY id
LIMIT %(limit)s;

-- name: timelines_of
SELECT application_id, step, actor, at, source, recorded_at
FROM steps
WHERE application_id = ANY(%(ids)s)
ORDER BY application_id, id;

-- name: breaches_counted
SELECT application_id, step FROM breaches WHERE application_id = ANY(%(ids)s);

-- name: count_breach
INSERT INTO breaches (application_id, step, counted_by, counted_at)
VALUES (%(application_id)s, %(step)s, %(holder)s, %(now)s)
ON CONFLICT (application_id, step) DO NOTHING
RETURNING application_id, step;

-- name: set_breach_check
UPDATE applications SET breach_check_at = %(at)s WHERE id = %(id)s;

-- name: settle_breaches
UPDATE applications SET breaches_settled_at = %(now)s WHERE id = ANY(%(ids)s) AND breaches_settled_at IS NULL;

-- name: release_outbox_claims
UPDATE outbox SET claimed_until = NULL, claimed_by = NULL
WHERE claimed_by = %(holder)s AND state = 'PENDING' AND claimed_until IS NOT NULL;

-- -- audit (docs/audit.md) -----------------------------------------------------------------------------

-- name: audit_head
SELECT log_id, seq, chain_hash FROM audit_head WHERE id = 1;

-- The sequencer's lock: one sequencer at a time across instances; another finds the row locked and goes.
-- name: audit_head_lock
SELECT log_id, seq, chain_hash FROM audit_head WHERE id = 1 FOR UPDATE SKIP LOCKED;

-- name: audit_head_set
UPDATE audit_head SET seq = %(seq)s, chain_hash = %(chain_hash)s WHERE id = 1;

-- name: log_pending_batch
SELECT m.id, m.direction, m.endpoint, m.message_id, m.sender_id, m.correlation_id, m.application_id, m.verdict,
       m.sha256, m.at
FROM log_pending p JOIN message_log m ON m.id = p.log_id
ORDER BY p.log_id LIMIT %(limit)s;

-- name: log_pending_delete
DELETE FROM log_pending WHERE log_id = ANY(%(ids)s);

-- name: log_pending_count
SELECT count(*) AS n FROM log_pending;

-- name: log_chain_insert
INSERT INTO log_chain (seq, log_id, chain_hash) VALUES (%(seq)s, %(log_id)s, %(chain_hash)s);

-- name: audit_records
SELECT c.seq, c.chain_hash, c.log_id, m.id AS present, m.direction, m.endpoint, m.message_id, m.sender_id,
       m.correlation_id, m.application_id, m.verdict, m.body, m.sha256, m.at, p.log_id IS NOT NULL AS purged
FROM log_chain c LEFT JOIN message_log m ON m.id = c.log_id LEFT JOIN log_purged p ON p.log_id = c.log_id
WHERE c.seq > %(after)s AND c.seq <= %(upto)s ORDER BY c.seq LIMIT %(limit)s;

-- name: audit_records_of_application
SELECT c.seq, c.chain_hash, c.log_id, m.id AS present, m.direction, m.endpoint, m.message_id, m.sender_id,
       m.correlation_id, m.application_id, m.verdict, m.body, m.sha256, m.at, p.log_id IS NOT NULL AS purged
FROM message_log m JOIN log_chain c ON c.log_id = m.id LEFT JOIN log_purged p ON p.log_id = c.log_id
WHERE m.application_id = %(application_id)s ORDER BY c.seq;

-- name: audit_links
SELECT c.seq, c.chain_hash, m.id AS present, m.direction, m.endpoint, m.message_id, m.sender_id, m.correlation_id,
       m.application_id, m.verdict, m.sha256, m.at
FROM log_chain c LEFT JOIN message_log m ON m.id = c.log_id
WHERE c.seq >= %(lo)s AND c.seq <= %(hi)s ORDER BY c.seq;

-- name: chain_hash_at
SELECT chain_hash FROM log_chain WHERE seq = %(seq)s;

-- name: record_time_at
SELECT m.at FROM log_chain c JOIN message_log m ON m.id = c.log_id WHERE c.seq = %(seq)s;

-- name: checkpoints_all
SELECT id, size, root, at, note, timestamp_token FROM audit_checkpoints ORDER BY size;

-- name: checkpoint_last
SELECT id, size, root, at, note, timestamp_token FROM audit_checkpoints ORDER BY size DESC LIMIT 1;

-- name: checkpoint_covering
SELECT id, size, root, at, note, timestamp_token FROM audit_checkpoints WHERE size >= %(size)s
ORDER BY size LIMIT 1;

-- name: checkpoint_count
SELECT count(*) AS n FROM audit_checkpoints;

-- name: checkpoint_insert
INSERT INTO audit_checkpoints (size, root, at, note) VALUES (%(size)s, %(root)s, %(at)s, %(note)s) RETURNING id;

-- name: checkpoint_token
UPDATE audit_checkpoints SET timestamp_token = %(token)s WHERE id = %(id)s;

-- name: seal_certs
SELECT cert_pem FROM audit_seal_certs ORDER BY id;

-- name: seal_cert_put
INSERT INTO audit_seal_certs (cert_pem, created_at) VALUES (%(cert_pem)s, %(now)s);

-- Records of finished applications older than `before` whose body is still there.
-- name: purgeable_log
SELECT m.id FROM message_log m JOIN applications a ON a.id = m.application_id
WHERE m.at < %(before)s AND a.status IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED')
  AND NOT EXISTS (SELECT 1 FROM log_purged p WHERE p.log_id = m.id)
ORDER BY m.id LIMIT %(limit)s;

-- name: purge_log_bodies
UPDATE message_log SET body = ''::bytea WHERE id = ANY(%(ids)s);

-- name: purge_log_mark
INSERT INTO log_purged (log_id, purged_at) SELECT unnest(%(ids)s::bigint[]), %(now)s ON CONFLICT DO NOTHING;

-- name: purge_documents
UPDATE documents SET content = ''::bytea
WHERE application_id IN (SELECT id FROM applications
                         WHERE received_at < %(before)s AND status IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED'))
  AND length(content) > 0;

-- name: purge_payloads
UPDATE payloads SET body = ''::bytea
WHERE application_id IN (SELECT id FROM applications
                         WHERE received_at < %(before)s AND status IN ('GRANTED', 'REFUSED', 'INTAKE_REFUSED'))
  AND length(body) > 0;

-- name: log_with_secrets
SELECT id FROM message_log
WHERE position('assword'::bytea IN body) > 0 OR position('earer'::bytea IN body) > 0
   OR position('licgate_session'::bytea IN body) > 0;

-- The outbox rows whose envelope may carry the gateway's SHEP password (stored before it was left out).
-- name: outbox_with_secrets
SELECT id FROM outbox WHERE position('<password>'::bytea IN body) > 0;

-- name: outbox_body
SELECT body FROM outbox WHERE id = %(id)s;

-- name: outbox_rewrite
UPDATE outbox SET body = %(body)s WHERE id = %(id)s;

-- name: log_body
SELECT body FROM message_log WHERE id = %(id)s;

-- name: log_rewrite
UPDATE message_log SET body = %(body)s, sha256 = %(sha256)s WHERE id = %(id)s;

-- The message log's audit (docs/audit.md): one hash chain over the records, signed checkpoints, purges.
-- Records are inserted as before, in their own transactions and without a sequence number (no lock on
-- the intake path); a trigger notes each new one in log_pending. The sequencer (one at a time across every
-- instance: it holds audit_head's row FOR UPDATE) gives committed pending records their place in the
-- chain (log_chain), in id order, shortly after their commit.
-- The rows stored before this migration are rewritten with their secrets masked (SqlStorage.migrate's data
-- step for this migration) and are the chain's first records.

CREATE TABLE audit_head (
    id         integer PRIMARY KEY CHECK (id = 1),
    log_id     text NOT NULL,
    seq        bigint NOT NULL,
    chain_hash text NOT NULL
);
INSERT INTO audit_head (id, log_id, seq, chain_hash)
VALUES (1, md5(random()::text || clock_timestamp()::text), 0, repeat('0', 64));

CREATE TABLE log_chain (
    seq        bigint PRIMARY KEY,
    log_id     bigint NOT NULL UNIQUE,
    chain_hash text NOT NULL
);

CREATE TABLE log_pending (
    log_id bigint PRIMARY KEY
);
INSERT INTO log_pending (log_id) SELECT id FROM message_log;
CREATE FUNCTION licgate_log_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO log_pending (log_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER message_log_pending AFTER INSERT ON message_log FOR EACH ROW EXECUTE FUNCTION licgate_log_pending();

CREATE TABLE log_purged (
    log_id    bigint PRIMARY KEY,
    purged_at timestamptz NOT NULL
);

CREATE TABLE audit_checkpoints (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    size            bigint NOT NULL UNIQUE,
    root            text NOT NULL,
    at              timestamptz NOT NULL,
    note            text NOT NULL,
    timestamp_token bytea
);

-- The certificates of the seal keys the gateway made itself (one per process start; the keys stay in memory).
CREATE TABLE audit_seal_certs (
    id         bigserial PRIMARY KEY,
    cert_pem   bytea NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX message_log_by_sender ON message_log (sender_id, id);
CREATE INDEX message_log_by_time ON message_log (at);

-- The message log's audit (docs/audit.md): one hash chain over the records, signed checkpoints, purges.
-- Records are inserted as before; a trigger notes each new one in log_pending, and the sequencer (one at a
-- time: SQLite's single writer) gives pending records their place in the chain (log_chain) in id order.
-- message_log itself is not altered: its body stays the last column (migration 2).
-- The rows stored before this migration are rewritten with their secrets masked (SqlStorage.migrate's data
-- step for this migration) and are the chain's first records.

CREATE TABLE audit_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    log_id     TEXT NOT NULL,            -- this log's identity: the checkpoints' origin line names it
    seq        INTEGER NOT NULL,         -- the chain's length
    chain_hash TEXT NOT NULL             -- the chain hash of record `seq` (64 zeros for none)
);
INSERT INTO audit_head (id, log_id, seq, chain_hash)
VALUES (1, lower(hex(randomblob(16))), 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE log_chain (
    seq        INTEGER PRIMARY KEY,
    log_id     INTEGER NOT NULL UNIQUE,  -- message_log.id
    chain_hash TEXT NOT NULL
);

CREATE TABLE log_pending (
    log_id INTEGER PRIMARY KEY
);
INSERT INTO log_pending (log_id) SELECT id FROM message_log;
CREATE TRIGGER message_log_pending AFTER INSERT ON message_log BEGIN
    INSERT INTO log_pending (log_id) VALUES (NEW.id);
END;

-- Records whose body `licgate audit purge` removed (their hashes stay: the chain still verifies).
CREATE TABLE log_purged (
    log_id    INTEGER PRIMARY KEY,
    purged_at INTEGER NOT NULL
);

CREATE TABLE audit_checkpoints (
    id              INTEGER PRIMARY KEY,
    size            INTEGER NOT NULL UNIQUE,
    root            TEXT NOT NULL,
    at              INTEGER NOT NULL,
    note            TEXT NOT NULL,       -- the signed note, as appended to checkpoint_file
    timestamp_token BLOB                 -- RFC 3161 token over the note's signature, when tsa_url is set
);

-- The certificates of the seal keys the gateway made itself when [audit] names none: one per process
-- start, the key itself held in that process's memory only (docs/audit.md says what that protects).
CREATE TABLE audit_seal_certs (
    id         INTEGER PRIMARY KEY,
    cert_pem   BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Searches of the log (ops API, console): by sender, by time.
CREATE INDEX message_log_by_sender ON message_log (sender_id, id);
CREATE INDEX message_log_by_time ON message_log (at);

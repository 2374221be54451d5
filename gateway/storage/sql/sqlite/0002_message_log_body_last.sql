-- message_log.body becomes the table's last column. A large body is inserted as a zeroblob and then
-- written in place (SqliteStorage._insert_with_blob); SQLite writes a zeroblob that ends its record page by
-- page, but materialises one followed by other columns: 10 MB more at the peak for a 10 MB message.
CREATE TABLE message_log_v2 (
    id             INTEGER PRIMARY KEY,
    direction      TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    message_id     TEXT,
    sender_id      TEXT,
    correlation_id TEXT,
    application_id TEXT,
    verdict        TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    at             INTEGER NOT NULL,
    body           BLOB NOT NULL
);
INSERT INTO message_log_v2 (id, direction, endpoint, message_id, sender_id, correlation_id, application_id,
                            verdict, sha256, at, body)
SELECT id, direction, endpoint, message_id, sender_id, correlation_id, application_id, verdict, sha256, at, body
FROM message_log;
DROP TABLE message_log;
ALTER TABLE message_log_v2 RENAME TO message_log;
CREATE INDEX message_log_by_message ON message_log (message_id, id);
CREATE INDEX message_log_by_application ON message_log (application_id, id);

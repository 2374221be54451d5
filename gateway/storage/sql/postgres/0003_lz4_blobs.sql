-- Stored messages and documents compressed with lz4 rather than pglz, PostgreSQL's default: the XML of a
-- request and of its payload compresses well, and pglz spent about a fifth of the server's CPU per intake
-- (0.88 -> 0.70 ms of server CPU per application and 504 -> 551/s at concurrency 16, measured with
-- benchmarks/intake.py's load). Rows already stored keep their compression. A server without lz4 (built
-- without it, or older than PostgreSQL 14) keeps pglz.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE applications ALTER COLUMN receipt SET COMPRESSION lz4, '
            'ALTER COLUMN result SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE payloads ALTER COLUMN body SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE documents ALTER COLUMN content SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE outbox ALTER COLUMN body SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE message_log ALTER COLUMN body SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'lz4 compression is not available on this server: stored blobs stay compressed with pglz';
END
$$;

-- Queue depth per provider without counting the queue (count(*) takes tens of milliseconds at a million
-- rows, and intake asks for the depth on every request). Each statement that adds or removes queue rows
-- adds its net change to one of 16 slots picked at random, so concurrent intakes and acks seldom wait for
-- one another on a counter row; a provider's depth is the sum of its slots.
CREATE TABLE queue_depth (
    provider_bin text NOT NULL,
    slot         integer NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (provider_bin, slot)
);

CREATE FUNCTION queue_depth_track() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO queue_depth (provider_bin, slot, n)
        SELECT provider_bin, floor(random() * 16)::integer, count(*) FROM added GROUP BY provider_bin
        ON CONFLICT (provider_bin, slot) DO UPDATE SET n = queue_depth.n + EXCLUDED.n;
    ELSE
        INSERT INTO queue_depth (provider_bin, slot, n)
        SELECT provider_bin, floor(random() * 16)::integer, -count(*) FROM removed GROUP BY provider_bin
        ON CONFLICT (provider_bin, slot) DO UPDATE SET n = queue_depth.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

-- CREATE TRIGGER locks the queue against writers until this migration commits, so the count below is exact.
CREATE TRIGGER queue_depth_added AFTER INSERT ON queue REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_track();
CREATE TRIGGER queue_depth_removed AFTER DELETE ON queue REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION queue_depth_track();

INSERT INTO queue_depth (provider_bin, slot, n) SELECT provider_bin, 0, count(*) FROM queue GROUP BY provider_bin;

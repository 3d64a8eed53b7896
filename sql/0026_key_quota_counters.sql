-- The customer managed keys quota (100,000 per account and region) was checked with a count of
-- the account's keys under a lock, in every CreateKey: the count grows with the keys, and the
-- lock made every creation wait for it (100,000 keys took tens of minutes to create). Triggers
-- now keep a count per account and region, split over 16 rows (by the key id's first hex digit)
-- so that concurrent creations do not queue on one row. CreateKey reads the 16 rows; only
-- within a margin of the quota does it take the lock, and reads them again under it.
CREATE TABLE quota_usage (
    account_id TEXT NOT NULL,
    region     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    shard      SMALLINT NOT NULL,
    used       BIGINT NOT NULL,
    PRIMARY KEY (account_id, region, resource, shard)
);

INSERT INTO quota_usage (account_id, region, resource, shard, used)
SELECT account_id, region, 'keys', get_byte(uuid_send(key_id), 0) >> 4, count(*)
FROM keys WHERE key_manager = 'CUSTOMER'
GROUP BY account_id, region, get_byte(uuid_send(key_id), 0) >> 4;

CREATE FUNCTION count_customer_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.key_manager = 'CUSTOMER' THEN
            INSERT INTO quota_usage (account_id, region, resource, shard, used)
            VALUES (NEW.account_id, NEW.region, 'keys', get_byte(uuid_send(NEW.key_id), 0) >> 4, 1)
            ON CONFLICT (account_id, region, resource, shard)
            DO UPDATE SET used = quota_usage.used + 1;
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.key_manager = 'CUSTOMER' THEN
        UPDATE quota_usage SET used = used - 1
        WHERE account_id = OLD.account_id AND region = OLD.region AND resource = 'keys'
          AND shard = get_byte(uuid_send(OLD.key_id), 0) >> 4;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER keys_counted AFTER INSERT OR DELETE ON keys
FOR EACH ROW EXECUTE FUNCTION count_customer_keys();

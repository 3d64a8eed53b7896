-- The customer managed keys quota: a count per account and region kept by triggers (as in the
-- Postgres schema, split over 16 rows by the key id's first hex digit), so CreateKey never
-- counts the account's keys: it reads these rows, again under the lock within a margin of the
-- quota.
CREATE TABLE quota_usage (
    account_id TEXT NOT NULL,
    region     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    shard      INTEGER NOT NULL,
    used       INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, resource, shard)
);

INSERT INTO quota_usage (account_id, region, resource, shard, used)
SELECT account_id, region, 'keys', instr('0123456789ABCDEF', substr(hex(key_id), 1, 1)) - 1, count(*)
FROM keys WHERE key_manager = 'CUSTOMER'
GROUP BY account_id, region, instr('0123456789ABCDEF', substr(hex(key_id), 1, 1)) - 1;

CREATE TRIGGER keys_counted_insert AFTER INSERT ON keys WHEN NEW.key_manager = 'CUSTOMER'
BEGIN
    INSERT OR IGNORE INTO quota_usage (account_id, region, resource, shard, used)
    VALUES (NEW.account_id, NEW.region, 'keys', instr('0123456789ABCDEF', substr(hex(NEW.key_id), 1, 1)) - 1, 0);
    UPDATE quota_usage SET used = used + 1
    WHERE account_id = NEW.account_id AND region = NEW.region AND resource = 'keys'
      AND shard = instr('0123456789ABCDEF', substr(hex(NEW.key_id), 1, 1)) - 1;
END;

CREATE TRIGGER keys_counted_delete AFTER DELETE ON keys WHEN OLD.key_manager = 'CUSTOMER'
BEGIN
    UPDATE quota_usage SET used = used - 1
    WHERE account_id = OLD.account_id AND region = OLD.region AND resource = 'keys'
      AND shard = instr('0123456789ABCDEF', substr(hex(OLD.key_id), 1, 1)) - 1;
END;

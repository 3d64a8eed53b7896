-- The trail viewer's lookups of other accounts' calls that used an account's keys (see the
-- Postgres migration 0036): the account of `arn:aws:kms:<region>:<account>:…` is the 12
-- characters after the region. Additive.
CREATE INDEX audit_events_by_first_key_owner ON audit_events (substr(json_extract(key_arns, '$[0]'), instr(substr(json_extract(key_arns, '$[0]'), 13), ':') + 13, 12), seq)
    WHERE json_extract(key_arns, '$[0]') IS NOT NULL
    AND substr(json_extract(key_arns, '$[0]'), instr(substr(json_extract(key_arns, '$[0]'), 13), ':') + 13, 12) IS NOT account_id;
CREATE INDEX audit_events_by_second_key_owner ON audit_events (substr(json_extract(key_arns, '$[1]'), instr(substr(json_extract(key_arns, '$[1]'), 13), ':') + 13, 12), seq)
    WHERE json_extract(key_arns, '$[1]') IS NOT NULL
    AND substr(json_extract(key_arns, '$[1]'), instr(substr(json_extract(key_arns, '$[1]'), 13), ':') + 13, 12) IS NOT account_id;

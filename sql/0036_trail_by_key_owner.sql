-- A call from another account that used one of an account's keys is in that account's trail
-- too, as AWS records a cross-account call in the key owner's account as well. The trail
-- viewer reads, newest first, the events whose first or second key ARN names the account (its
-- fifth field) while their caller's account is another. These indexes hold only such events:
-- an account's own calls on its own keys (most of the trail) are found by account alone, and
-- are not walked past to find the few from elsewhere. Additive.
CREATE INDEX audit_events_by_first_key_owner ON audit_events (split_part(key_arns[1], ':', 5), seq)
    WHERE key_arns[1] IS NOT NULL AND split_part(key_arns[1], ':', 5) IS DISTINCT FROM account_id;
CREATE INDEX audit_events_by_second_key_owner ON audit_events (split_part(key_arns[2], ':', 5), seq)
    WHERE key_arns[2] IS NOT NULL AND split_part(key_arns[2], ':', 5) IS DISTINCT FROM account_id;

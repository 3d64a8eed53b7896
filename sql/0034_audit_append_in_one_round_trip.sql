-- The trail's append after the head as it is, in one round trip (for a node that found another
-- node appending too): the head's row is locked, each event is chained after it, the events,
-- the row generations they name and the change records they settle are written, and the head
-- moves; the new hashes are returned. Before it, such an append took a transaction of four
-- round trips, with the head locked through three of them and the commit.
--
-- The hash is the service's (src/audit/mod.rs, chain_hash): SHA-256 over the bytes of
-- "kms.audit.event.v1" and a zero byte, the sequence number as 8 big-endian bytes, the
-- previous hash, and the body as UTF-8. The service recomputes every hash this returns and
-- acknowledges no event whose hash differs: the function, like every row, is the database's,
-- and is not trusted for more than the rows are. Additive.
CREATE FUNCTION kms_audit_append(
    ids uuid[], times timestamptz[], names text[], accounts text[], arns text[], bodies text[],
    settles uuid[], gen_rows text[], gen_values bigint[], gen_events int[])
RETURNS TABLE (first_seq bigint, first_prev bytea, hashes bytea[])
LANGUAGE plpgsql AS $$
DECLARE
    n int := coalesce(array_length(bodies, 1), 0);
    head_seq bigint;
    head_hash bytea;
    h bytea;
    seqs bigint[] := '{}';
    prevs bytea[] := '{}';
    out_hashes bytea[] := '{}';
BEGIN
    SELECT a.seq, a.hash INTO head_seq, head_hash FROM audit_head a WHERE a.id = 1 FOR UPDATE;
    h := head_hash;
    FOR i IN 1..n LOOP
        seqs := seqs || (head_seq + i);
        prevs := prevs || h;
        h := sha256('\x6b6d732e61756469742e6576656e742e763100'::bytea || int8send(head_seq + i)
                    || h || convert_to(bodies[i], 'UTF8'));
        out_hashes := out_hashes || h;
    END LOOP;
    IF n > 0 THEN
        INSERT INTO audit_events (seq, event_id, event_time, event_name, account_id, key_arns, body, prev_hash, hash)
            SELECT x.s, x.i, x.t, x.n, x.a,
                   CASE WHEN x.k = '' THEN '{}'::text[] ELSE string_to_array(x.k, E'\n') END,
                   x.b, x.p, x.h
            FROM UNNEST(seqs, ids, times, names, accounts, arns, bodies, prevs, out_hashes)
                 AS x(s, i, t, n, a, k, b, p, h);
        INSERT INTO audit_generations (row_name, generation, seq)
            SELECT y.r, y.g, head_seq + y.e FROM UNNEST(gen_rows, gen_values, gen_events) AS y(r, g, e);
        DELETE FROM audit_outbox WHERE event_id = ANY(settles);
        UPDATE audit_head SET seq = head_seq + n, hash = h WHERE id = 1;
    END IF;
    RETURN QUERY SELECT head_seq + 1, head_hash, out_hashes;
END
$$;

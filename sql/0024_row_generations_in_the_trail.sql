-- A row's seal says the service wrote it, not that it is the row's latest content: a database
-- writer could put back an older row with the seal it had then (a replay). So every sealed row
-- that a change rewrites (a key's policy, state, tags, attributes and rotation state, an alias,
-- a principal's authorization) carries a generation under its seal, one above the row's
-- previous generation and above every generation the trail holds for it; the change's event
-- names the generations it wrote (`additionalEventData.rowGenerations`, in the hashed body).
-- This table indexes them, written in the statement that chains the event; `kms audit verify`
-- checks it against the bodies. A row below the highest generation the trail holds for it is
-- an older row put back, and is refused.
CREATE TABLE audit_generations (
    row_name   TEXT NOT NULL,
    generation BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (row_name, generation, seq)
);

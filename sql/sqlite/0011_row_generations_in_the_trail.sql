-- The same as the Postgres migration 0024: the row generations the trail's events name.
CREATE TABLE audit_generations (
    row_name   TEXT NOT NULL,
    generation INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (row_name, generation, seq)
) STRICT;

-- The API's tables, created with the cluster on the database's first start
-- (as the official postgres image runs its docker-entrypoint-initdb.d).
CREATE TABLE notes (
    id      bigserial PRIMARY KEY,
    body    text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);

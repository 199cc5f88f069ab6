-- The `pcx serve` processes running on this database, so that replicas which must agree on their
-- secrets are seen to agree. The JWT secret and the oracle's key come from each replica's
-- environment, a file it names, or a file generated in its data directory; replicas on different
-- machines that were not given the same ones would each generate their own, and tokens of one
-- would fail on another, and they would sign rounds as different oracles. Each replica registers
-- here at start (one transaction under an advisory transaction lock, so replicas starting
-- together are checked one after another) and refuses to start beside a live replica whose
-- secrets differ from its own; it renews `seen_at` every few seconds and deletes its row when it
-- stops. A row not renewed for a while is a replica that died and is ignored, then deleted.
--
-- Nothing secret is kept: the oracle's address is public, and the JWT secret is told apart by a
-- SHA-256 over a fixed label and the secret, which reveals no more of it than any token it signs
-- (a token already allows the same offline guessing; generated secrets are 256 random bits).
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

CREATE TABLE replicas (
    -- A random id each `pcx serve` process draws at start (the worker lease's holder id).
    id                        UUID PRIMARY KEY,
    -- For the operator: which machine and process.
    host                      TEXT NOT NULL,
    pid                       INTEGER NOT NULL,
    started_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Renewed every few seconds by the replica (the database's clock).
    seen_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- SHA-256 (hex) of the label and the JWT secret it signs with ...
    jwt_fingerprint           TEXT NOT NULL CHECK (jwt_fingerprint ~ '^[0-9a-f]{64}$'),
    -- ... and of the previous one it still accepts after a rotation, if any.
    previous_jwt_fingerprint  TEXT CHECK (previous_jwt_fingerprint ~ '^[0-9a-f]{64}$'),
    -- The oracle's signing address (0x + 40 hex digits).
    oracle_signer             TEXT NOT NULL CHECK (oracle_signer ~ '^0x[0-9a-fA-F]{40}$')
);

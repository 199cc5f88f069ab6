-- The built-in circuit's Groth16 setups (hash-chain, one per traded size), made by the exchange
-- once from the operating system's randomness and kept with the market's data, so that every
-- replica verifies with the same key and agents download the proving key from the exchange.
-- Nobody holds the setup's toxic waste: it existed only inside the process that made it.
--
-- `development` marks the deterministic, forgeable development setup an operator asked for
-- explicitly (`pcx serve --dev-keys`, for tests and benchmarks); an exchange started without
-- that flag refuses to use such a row.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

CREATE TABLE builtin_setups (
    circuit         TEXT NOT NULL,
    size_log2       SMALLINT NOT NULL CHECK (size_log2 BETWEEN 1 AND 28),
    development     BOOLEAN NOT NULL,
    -- The proving key as agents' key files hold it (ark-serialize, uncompressed).
    pk_blob         UUID NOT NULL REFERENCES artifact_blobs (id),
    -- The verifying key in snarkjs' vk.json shape (public).
    verifying_key   JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (circuit, size_log2)
);

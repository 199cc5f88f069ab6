-- Circuits users bring: circom 2 circuits with snarkjs Groth16 setups. A circuit is registered
-- with its three artifacts (constraints `.r1cs`, witness generator `.wasm`, setup `.zkey`) and a
-- sample input, and trades once a proof made from them has verified.
--
-- Artifacts are stored in the database, in chunks, so every replica of the exchange sees the same
-- files and one backup holds the whole market. They are content-addressed: a blob's sha256 is its
-- identity, and a circuit's id is the sha256 over its three artifacts' sha256s.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

-- One uploaded file, written in chunks as it streams in; its sha256 is known once the last
-- chunk is in, in the same transaction (an upload that fails leaves nothing).
CREATE TABLE artifact_blobs (
    id          UUID PRIMARY KEY,
    sha256      BYTEA NOT NULL CHECK (length(sha256) = 32),
    bytes       BIGINT NOT NULL CHECK (bytes >= 0),
    created_at  TIMESTAMPTZ NOT NULL
);

-- The blob's bytes, in order. Chunks are at most a few MiB (TOAST stores them out of line).
CREATE TABLE artifact_chunks (
    blob_id     UUID NOT NULL REFERENCES artifact_blobs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq >= 0),
    data        BYTEA NOT NULL,
    PRIMARY KEY (blob_id, seq)
);

-- A registered circuit. `id` = hex sha256 of "pcx-circuit-v1\n" + the r1cs, wasm and zkey
-- sha256s in hex, one per line: the same files always make the same circuit.
CREATE TABLE circuits (
    id              TEXT PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    owner_id        UUID NOT NULL REFERENCES accounts (id),
    -- 'ready': a proof from the artifacts and the sample input verified against the zkey's key.
    -- Registration answers only after that check, so no other state is stored yet.
    status          TEXT NOT NULL CHECK (status IN ('ready')),
    constraints     BIGINT NOT NULL CHECK (constraints >= 0),
    wires           BIGINT NOT NULL CHECK (wires >= 1),
    public_signals  INTEGER NOT NULL CHECK (public_signals >= 0),
    public_outputs  INTEGER NOT NULL CHECK (public_outputs >= 0),
    private_inputs  INTEGER NOT NULL CHECK (private_inputs >= 0),
    -- log2 of the QAP domain: the proof class's size.
    size_log2       SMALLINT NOT NULL CHECK (size_log2 BETWEEN 1 AND 28),
    circom_version  TEXT NOT NULL,
    -- The verifying key in snarkjs' vk.json shape (public: anyone may verify).
    verifying_key   JSONB NOT NULL,
    sample_input    JSONB NOT NULL,
    r1cs_blob       UUID NOT NULL REFERENCES artifact_blobs (id),
    wasm_blob       UUID NOT NULL REFERENCES artifact_blobs (id),
    zkey_blob       UUID NOT NULL REFERENCES artifact_blobs (id),
    -- How long registration's checks took (parse, witness, proof, verification), for operators.
    check_ms        BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX circuits_by_owner ON circuits (owner_id, created_at);

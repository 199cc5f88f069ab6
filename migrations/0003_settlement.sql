-- Settlement: materialised slots, the jobs that get them proved, prover agents, and the
-- guarantees that each payment and slash happens exactly once.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

-- ---------------------------------------------------------------------------------------------
-- Contract progress. Slots are materialised lazily, a horizon ahead: `materialised_until` is the
-- next slot number to materialise and `materialise_at` when it opens (NULL once all are). Escrow is
-- a rolling window: slots below `escrow_until` have their payment locked in the buyer's escrow,
-- `escrow_next_at` is when slot `escrow_until` opens, and `escrow_held` what the escrow holds for
-- this contract. The scheduler finds the contracts that need work through the partial indexes.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE contracts
    ADD COLUMN materialised_until  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN materialise_at      TIMESTAMPTZ,
    ADD COLUMN escrow_until        BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN escrow_next_at      TIMESTAMPTZ,
    ADD COLUMN escrow_held         NUMERIC(20, 6) NOT NULL DEFAULT 0 CHECK (escrow_held >= 0),
    ADD COLUMN completed_at        TIMESTAMPTZ;
UPDATE contracts SET materialise_at = starts_at, escrow_next_at = starts_at;
CREATE INDEX contracts_to_materialise ON contracts (materialise_at) WHERE materialise_at IS NOT NULL;
CREATE INDEX contracts_to_escrow ON contracts (escrow_next_at) WHERE escrow_next_at IS NOT NULL;

-- ---------------------------------------------------------------------------------------------
-- Slots, materialised from the contract's schedule and allocation blocks. `state` moves
-- scheduled -> proving -> one final state (delivered, missed, unused, cancelled) and never back;
-- every transition is one transaction guarded by the expected current state.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE slots (
    contract_id         UUID NOT NULL REFERENCES contracts (id),
    n                   BIGINT NOT NULL CHECK (n >= 0),
    opens_at            TIMESTAMPTZ NOT NULL,
    deadline            TIMESTAMPTZ NOT NULL,
    block_no            INTEGER NOT NULL,
    primary_prover_id   UUID NOT NULL REFERENCES accounts (id),
    backup_prover_ids   UUID[] NOT NULL,
    price               NUMERIC(20, 6) NOT NULL CHECK (price > 0),  -- price per proof x proofs per slot
    public_input        TEXT,                                       -- decimal field element
    state               TEXT NOT NULL DEFAULT 'scheduled'
                        CHECK (state IN ('scheduled', 'proving', 'delivered', 'missed', 'unused', 'cancelled')),
    reason              TEXT,
    failed_attempts     INTEGER NOT NULL DEFAULT 0,
    step_in_bonus       NUMERIC(20, 6) NOT NULL DEFAULT 0,           -- slashed funds set aside in insurance
    delivered_by        UUID REFERENCES accounts (id),
    delivered_at        TIMESTAMPTZ,
    proof               TEXT,                                        -- 0x + compressed Groth16 proof
    public_output       TEXT,
    settled_at          TIMESTAMPTZ,
    PRIMARY KEY (contract_id, n),
    FOREIGN KEY (contract_id, block_no) REFERENCES contract_blocks (contract_id, block_no),
    CHECK ((state IN ('scheduled', 'proving')) = (settled_at IS NULL)),
    CHECK ((state = 'delivered') = (delivered_by IS NOT NULL AND proof IS NOT NULL))
);
CREATE INDEX slots_to_open ON slots (opens_at) WHERE state = 'scheduled';
CREATE INDEX slots_proving ON slots (deadline) WHERE state = 'proving';

-- ---------------------------------------------------------------------------------------------
-- Jobs: the attempts to get a slot proved. At most one live job per slot (the partial unique
-- index); each attempt number is used once.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE jobs (
    id                  UUID PRIMARY KEY,
    contract_id         UUID NOT NULL,
    n                   BIGINT NOT NULL,
    attempt             INTEGER NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('primary', 'backup', 'open')),
    prover_id           UUID REFERENCES accounts (id),   -- NULL: open market, until claimed
    state               TEXT NOT NULL DEFAULT 'offered' CHECK (state IN ('offered', 'claimed', 'delivered', 'failed')),
    failure             TEXT,
    offered_at          TIMESTAMPTZ NOT NULL,
    ack_deadline        TIMESTAMPTZ NOT NULL,
    claimed_at          TIMESTAMPTZ,
    agent_id            UUID,
    lease_expires_at    TIMESTAMPTZ,
    finished_at         TIMESTAMPTZ,
    FOREIGN KEY (contract_id, n) REFERENCES slots (contract_id, n),
    UNIQUE (contract_id, n, attempt),
    CHECK ((state = 'failed') = (failure IS NOT NULL)),
    CHECK (state = 'offered' OR prover_id IS NOT NULL)
);
CREATE UNIQUE INDEX jobs_one_live_per_slot ON jobs (contract_id, n) WHERE state IN ('offered', 'claimed');
CREATE INDEX jobs_offered ON jobs (ack_deadline) WHERE state = 'offered';
CREATE INDEX jobs_claimed ON jobs (lease_expires_at) WHERE state = 'claimed';
CREATE INDEX jobs_by_prover ON jobs (prover_id, state);

-- ---------------------------------------------------------------------------------------------
-- Prover agents: what each advertises (measured capabilities) and when it was last heard from.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE agents (
    id              UUID PRIMARY KEY,
    prover_id       UUID NOT NULL REFERENCES accounts (id),
    workers         INTEGER NOT NULL CHECK (workers > 0),
    backend         TEXT NOT NULL,
    capabilities    JSONB NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX agents_by_prover ON agents (prover_id, last_seen);

-- ---------------------------------------------------------------------------------------------
-- Exactly once: a settlement movement is referenced by what it settles, and a reference is used
-- once. Whatever a crash or a retry does, a slot is paid, refunded or bonus-paid at most once and a
-- job slashed at most once.
-- ---------------------------------------------------------------------------------------------
CREATE UNIQUE INDEX journal_entries_settle_once ON journal_entries (reference)
    WHERE kind IN ('slot_payment', 'slash', 'refund', 'step_in_bonus', 'escrow_release');

-- Reputation also records delivery latency (seconds from opening to verified proof).
CREATE INDEX jobs_delivered_latency ON jobs (prover_id, finished_at) WHERE state = 'delivered';

-- Capacity forwards: offers (asks), quotes, contracts, their allocation blocks, and the
-- reservations that hold provers' capacity.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.
--
-- Storage is O(allocation blocks), never O(slots): a contract stores one row, one row per block of
-- consecutive slots served by the same provers, and one reservation per prover and block. Slots are
-- computed from the schedule and the blocks.

-- ---------------------------------------------------------------------------------------------
-- Offers: a prover's ask for a proof class over a window, with optional volume tiers.
-- Cancelled offers keep the reservations already made on them (those are obligations) but take
-- no new ones.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE offers (
    id                  BIGSERIAL PRIMARY KEY,
    prover_id           UUID NOT NULL REFERENCES accounts (id),
    system              TEXT NOT NULL,
    circuit             TEXT NOT NULL,
    size_log2           SMALLINT NOT NULL,
    deadline_secs       INTEGER NOT NULL CHECK (deadline_secs > 0),
    window_start        TIMESTAMPTZ NOT NULL,
    window_end          TIMESTAMPTZ NOT NULL,
    proofs_per_hour     INTEGER NOT NULL CHECK (proofs_per_hour > 0),
    price_per_proof     NUMERIC(20, 6) NOT NULL CHECK (price_per_proof > 0),
    -- [{"from_proofs": N, "price_per_proof": "0.9"}, ...], validated by the application.
    tiers               JSONB NOT NULL DEFAULT '[]',
    status              TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    cancelled_at        TIMESTAMPTZ,
    CHECK (window_end > window_start)
);
CREATE INDEX offers_book ON offers (system, circuit, window_end) WHERE status = 'active';
CREATE INDEX offers_by_prover ON offers (prover_id, status);

-- ---------------------------------------------------------------------------------------------
-- Reputation per prover and circuit; settlement updates it with every outcome. The score used by
-- matching is (delivered + 1) / (delivered + missed + 2): 0.5 for a prover with no history.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE prover_reputation (
    prover_id   UUID NOT NULL REFERENCES accounts (id),
    system      TEXT NOT NULL,
    circuit     TEXT NOT NULL,
    delivered   BIGINT NOT NULL DEFAULT 0 CHECK (delivered >= 0),
    missed      BIGINT NOT NULL DEFAULT 0 CHECK (missed >= 0),
    PRIMARY KEY (prover_id, system, circuit)
);

-- ---------------------------------------------------------------------------------------------
-- Quotes: firm for a short time. `body` is the response the buyer saw; `allocation` the blocks
-- that accepting it reserves. A quote reserves nothing by itself.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE quotes (
    id          UUID PRIMARY KEY,
    buyer_id    UUID NOT NULL REFERENCES accounts (id),
    request     JSONB NOT NULL,
    body        JSONB NOT NULL,
    allocation  JSONB NOT NULL,
    valid_until TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------------------------
-- Contracts. `quote_id` is UNIQUE: a quote becomes at most one contract.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE contracts (
    id                  UUID PRIMARY KEY,
    buyer_id            UUID NOT NULL REFERENCES accounts (id),
    quote_id            UUID NOT NULL UNIQUE REFERENCES quotes (id),
    system              TEXT NOT NULL,
    circuit             TEXT NOT NULL,
    size_log2           SMALLINT NOT NULL,
    deadline_secs       INTEGER NOT NULL,
    starts_at           TIMESTAMPTZ NOT NULL,
    ends_at             TIMESTAMPTZ NOT NULL,
    every_secs          INTEGER NOT NULL CHECK (every_secs > 0),
    proofs_per_slot     INTEGER NOT NULL CHECK (proofs_per_slot > 0),
    redundancy          SMALLINT NOT NULL CHECK (redundancy >= 0),
    slot_count          BIGINT NOT NULL CHECK (slot_count > 0),
    price_per_proof     NUMERIC(20, 6) NOT NULL,   -- total / proofs, rounded (informational)
    discount_bps        INTEGER NOT NULL,
    total               NUMERIC(20, 6) NOT NULL,
    fee                 NUMERIC(20, 6) NOT NULL,
    escrow_locked       NUMERIC(20, 6) NOT NULL,   -- locked at purchase (first escrow window)
    status              TEXT NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'suspended', 'completed', 'cancelled')),
    status_reason       TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX contracts_by_buyer ON contracts (buyer_id, created_at);

-- A run of consecutive slots [first_slot, end_slot) served by the same primary and backups, at
-- one locked price per proof.
CREATE TABLE contract_blocks (
    contract_id         UUID NOT NULL REFERENCES contracts (id),
    block_no            INTEGER NOT NULL,
    first_slot          BIGINT NOT NULL CHECK (first_slot >= 0),
    end_slot            BIGINT NOT NULL,
    starts_at           TIMESTAMPTZ NOT NULL,
    ends_at             TIMESTAMPTZ NOT NULL,
    primary_offer_id    BIGINT NOT NULL REFERENCES offers (id),
    primary_prover_id   UUID NOT NULL REFERENCES accounts (id),
    backup_offer_ids    BIGINT[] NOT NULL,
    backup_prover_ids   UUID[] NOT NULL,
    price_per_proof     NUMERIC(20, 6) NOT NULL CHECK (price_per_proof > 0),
    PRIMARY KEY (contract_id, block_no),
    CHECK (end_slot > first_slot),
    CHECK (cardinality(backup_offer_ids) = cardinality(backup_prover_ids)),
    CHECK (NOT (primary_prover_id = ANY (backup_prover_ids)))
);

-- ---------------------------------------------------------------------------------------------
-- Reservations: a prover's capacity held by a block, in units (proofs per clock hour) over whole
-- hours [starts_at, ends_at). The trigger below refuses any reservation that would take an offer
-- past its capacity at any hour, per role (primary, backup), or that uses a cancelled offer or
-- falls outside its window. It locks the offer row first (FOR NO KEY UPDATE), so concurrent purchases of one offer's
-- capacity are serialised: the database, not the application, keeps the book from overbooking.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE reservations (
    id                  BIGSERIAL PRIMARY KEY,
    contract_id         UUID NOT NULL REFERENCES contracts (id),
    block_no            INTEGER NOT NULL,
    offer_id            BIGINT NOT NULL REFERENCES offers (id),
    prover_id           UUID NOT NULL REFERENCES accounts (id),
    role                TEXT NOT NULL CHECK (role IN ('primary', 'backup')),
    starts_at           TIMESTAMPTZ NOT NULL,
    ends_at             TIMESTAMPTZ NOT NULL,
    units_per_hour      INTEGER NOT NULL CHECK (units_per_hour > 0),
    price_per_proof     NUMERIC(20, 6) NOT NULL,   -- the block's locked price (collateral basis)
    CHECK (ends_at > starts_at),
    CHECK (date_trunc('hour', starts_at) = starts_at AND date_trunc('hour', ends_at) = ends_at),
    FOREIGN KEY (contract_id, block_no) REFERENCES contract_blocks (contract_id, block_no)
);
CREATE INDEX reservations_by_offer ON reservations (offer_id, role, starts_at);
CREATE INDEX reservations_by_prover ON reservations (prover_id, role, ends_at);

CREATE FUNCTION check_reservation_capacity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    offer   offers%ROWTYPE;
    peak    BIGINT;
BEGIN
    -- NO KEY UPDATE: it serialises purchases of this offer's capacity without conflicting with the
    -- KEY SHARE locks that foreign keys to the offer take (which would deadlock two purchases).
    SELECT * INTO offer FROM offers WHERE id = NEW.offer_id FOR NO KEY UPDATE;
    IF offer.status <> 'active' THEN
        RAISE EXCEPTION 'offer % is not active', NEW.offer_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_offer_active';
    END IF;
    IF NEW.prover_id <> offer.prover_id
       OR NEW.starts_at < date_trunc('hour', offer.window_start + interval '1 hour' - interval '1 microsecond')
       OR NEW.ends_at > date_trunc('hour', offer.window_end) THEN
        RAISE EXCEPTION 'reservation % lies outside offer %''s window', NEW.id, NEW.offer_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_within_window';
    END IF;
    -- The load is a step function that only rises where a reservation starts: its peak over the
    -- new range is at the new start or at a later start inside the range.
    SELECT max(load) INTO peak FROM (
        SELECT (SELECT coalesce(sum(r.units_per_hour), 0) FROM reservations r
                 WHERE r.offer_id = NEW.offer_id AND r.role = NEW.role
                   AND r.starts_at <= p.t AND p.t < r.ends_at) AS load
          FROM (SELECT NEW.starts_at AS t
                UNION
                SELECT r.starts_at FROM reservations r
                 WHERE r.offer_id = NEW.offer_id AND r.role = NEW.role
                   AND r.starts_at > NEW.starts_at AND r.starts_at < NEW.ends_at) p
    ) loads;
    IF peak > offer.proofs_per_hour THEN
        RAISE EXCEPTION 'offer % would hold % % units in an hour, above its % proofs/hour',
            NEW.offer_id, peak, NEW.role, offer.proofs_per_hour
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_within_capacity';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER reservations_capacity AFTER INSERT ON reservations
    FOR EACH ROW EXECUTE FUNCTION check_reservation_capacity();

-- Settlement v2: capacity counted where the slots are; job windows sized so the next prover can
-- still make the deadline; suspended contracts retried with backoff; primaries replaced when their
-- stake stops covering their slots; the scheduler's clock and the outages it saw.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

-- ---------------------------------------------------------------------------------------------
-- Reservations hold runs of slots. A reservation is the slots of one block that one offer serves
-- in one role: `slot_count` slots, `every_secs` apart from `first_at`, each `proofs_per_slot`
-- proofs. `starts_at`/`ends_at` stay the clock hours around them (for overlap lookups).
-- ---------------------------------------------------------------------------------------------
ALTER TABLE reservations
    ADD COLUMN first_at         TIMESTAMPTZ,
    ADD COLUMN every_secs       INTEGER,
    ADD COLUMN slot_count       BIGINT,
    ADD COLUMN proofs_per_slot  INTEGER;
UPDATE reservations r
   SET first_at = c.starts_at + b.first_slot * c.every_secs * interval '1 second',
       every_secs = c.every_secs,
       slot_count = b.end_slot - b.first_slot,
       proofs_per_slot = c.proofs_per_slot
  FROM contract_blocks b JOIN contracts c ON c.id = b.contract_id
 WHERE b.contract_id = r.contract_id AND b.block_no = r.block_no;
ALTER TABLE reservations
    ALTER COLUMN first_at SET NOT NULL,
    ALTER COLUMN every_secs SET NOT NULL,
    ALTER COLUMN slot_count SET NOT NULL,
    ALTER COLUMN proofs_per_slot SET NOT NULL,
    ADD CONSTRAINT reservations_run_shape CHECK (every_secs > 0 AND slot_count > 0 AND proofs_per_slot > 0);

-- The slots of a run opening in [t_from, t_to). Slot k opens at first_at + k * every_secs; the
-- first slot at or after t is ceil((t - first_at) / every), clamped to [0, slot_count]. The same
-- arithmetic as pcx_domain::Schedule::slots_between (a test checks they agree).
CREATE FUNCTION run_slots_between(first_at TIMESTAMPTZ, every_secs INTEGER, slot_count BIGINT,
                                  t_from TIMESTAMPTZ, t_to TIMESTAMPTZ) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT GREATEST(0,
             LEAST(slot_count, GREATEST(0, ceil(extract(epoch FROM t_to - first_at) / every_secs)::bigint))
           - LEAST(slot_count, GREATEST(0, ceil(extract(epoch FROM t_from - first_at) / every_secs)::bigint)))
$$;

-- The clock hours in [t_from, t_to) at which a run's count of slots per hour may change (the
-- Rust twin is pcx_capacity_reservation::capacity::SlotRun::changes): for a cadence dividing the
-- hour, its first two hours, its last hour and the hour after; for a cadence above an hour, each
-- slot's hour and the hour after it; for any other cadence, every hour it spans.
CREATE FUNCTION run_change_hours(first_at TIMESTAMPTZ, every_secs INTEGER, slot_count BIGINT,
                                 t_from TIMESTAMPTZ, t_to TIMESTAMPTZ) RETURNS SETOF TIMESTAMPTZ
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH run AS (
        SELECT date_trunc('hour', first_at) AS first_hour,
               date_trunc('hour', first_at + (slot_count - 1) * every_secs * interval '1 second') + interval '1 hour' AS end_hour
    ), hours AS (
        SELECT h FROM run, LATERAL (VALUES (first_hour), (first_hour + interval '1 hour'),
                                           (end_hour - interval '1 hour'), (end_hour)) v (h)
         WHERE every_secs <= 3600 AND 3600 % every_secs = 0
        UNION
        SELECT date_trunc('hour', first_at + k * every_secs * interval '1 second') + d * interval '1 hour'
          FROM generate_series(
                   GREATEST(0, ceil(extract(epoch FROM t_from - interval '1 hour' - first_at) / every_secs)::bigint),
                   LEAST(slot_count, GREATEST(0, ceil(extract(epoch FROM t_to - first_at) / every_secs)::bigint)) - 1) k,
               (VALUES (0), (1)) o (d)
         WHERE every_secs > 3600
        UNION
        SELECT h FROM run, generate_series(GREATEST(first_hour, date_trunc('hour', t_from)),
                                           LEAST(end_hour, t_to), interval '1 hour') h
         WHERE every_secs < 3600 AND 3600 % every_secs <> 0
    )
    SELECT h FROM hours WHERE h >= t_from AND h < t_to
$$;

-- The capacity check, counted where the slots are: in no clock hour may an offer's reservations
-- of one role hold more proofs than the offer's proofs_per_hour, and every slot a reservation
-- holds opens inside the offer's window. It locks the offer row first (FOR NO KEY UPDATE), so
-- concurrent purchases of one offer are serialised: the database keeps the book from overbooking.
CREATE OR REPLACE FUNCTION check_reservation_capacity() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    offer       offers%ROWTYPE;
    last_at     TIMESTAMPTZ := NEW.first_at + (NEW.slot_count - 1) * NEW.every_secs * interval '1 second';
    span_from   TIMESTAMPTZ := date_trunc('hour', NEW.first_at);
    span_to     TIMESTAMPTZ := date_trunc('hour', NEW.first_at + (NEW.slot_count - 1) * NEW.every_secs * interval '1 second')
                               + interval '1 hour';
    peak        BIGINT;
BEGIN
    SELECT * INTO offer FROM offers WHERE id = NEW.offer_id FOR NO KEY UPDATE;
    IF offer.status <> 'active' THEN
        RAISE EXCEPTION 'offer % is not active', NEW.offer_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_offer_active';
    END IF;
    IF NEW.prover_id <> offer.prover_id OR NEW.first_at < offer.window_start OR last_at >= offer.window_end THEN
        RAISE EXCEPTION 'reservation % lies outside offer %''s window', NEW.id, NEW.offer_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_within_window';
    END IF;
    WITH others AS (
        SELECT r.first_at, r.every_secs, r.slot_count, r.proofs_per_slot FROM reservations r
         WHERE r.offer_id = NEW.offer_id AND r.role = NEW.role AND r.id <> NEW.id
           AND r.starts_at < span_to AND r.ends_at > span_from
    ), candidates AS (
        SELECT h FROM run_change_hours(NEW.first_at, NEW.every_secs, NEW.slot_count, span_from, span_to) h
        UNION
        -- A run with a slot in every hour of its span meets every change of the others.
        SELECT h FROM others o, run_change_hours(o.first_at, o.every_secs, o.slot_count, span_from, span_to) h
         WHERE NEW.every_secs <= 3600
    ), loads AS (
        SELECT c.h,
               NEW.proofs_per_slot * run_slots_between(NEW.first_at, NEW.every_secs, NEW.slot_count, c.h, c.h + interval '1 hour') AS own,
               (SELECT coalesce(sum(o.proofs_per_slot * run_slots_between(o.first_at, o.every_secs, o.slot_count, c.h, c.h + interval '1 hour')), 0)
                  FROM others o) AS rest
          FROM candidates c
    )
    SELECT max(own + rest) INTO peak FROM loads WHERE own > 0;
    IF peak > offer.proofs_per_hour THEN
        RAISE EXCEPTION 'offer % would hold % % proofs in a clock hour, above its % proofs/hour',
            NEW.offer_id, peak, NEW.role, offer.proofs_per_hour
            USING ERRCODE = 'check_violation', CONSTRAINT = 'reservations_within_capacity';
    END IF;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Jobs carry their windows: `lease_until` caps any lease (it leaves the next prover its measured
-- time before the deadline), `slashable` says whether a failure is charged to its prover (not when
-- time was lost before the prover got it), `late` that the exchange offered it late (it was down or
-- behind: the prover gets the whole ack timeout). An agent's claimed jobs are found by its id, so a
-- claim retried after a lost answer gets its job back.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE jobs
    ADD COLUMN lease_until  TIMESTAMPTZ,
    ADD COLUMN slashable    BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN late         BOOLEAN NOT NULL DEFAULT false;
UPDATE jobs j SET lease_until = s.deadline FROM slots s WHERE s.contract_id = j.contract_id AND s.n = j.n;
ALTER TABLE jobs ALTER COLUMN lease_until SET NOT NULL;
CREATE INDEX jobs_claimed_by_agent ON jobs (agent_id) WHERE state = 'claimed';

-- ---------------------------------------------------------------------------------------------
-- Slots: a primary replaced for want of collateral keeps who it was and why; a delivered slot
-- keeps all its public signals (the circuit's public inputs, in order).
-- ---------------------------------------------------------------------------------------------
ALTER TABLE slots
    ADD COLUMN replaced_primary_id  UUID REFERENCES accounts (id),
    ADD COLUMN replacement_reason   TEXT,
    ADD COLUMN public_signals       TEXT[],
    ADD CONSTRAINT slots_replacement_has_reason CHECK ((replaced_primary_id IS NULL) = (replacement_reason IS NULL));
UPDATE slots SET public_signals = ARRAY[public_input, public_output] WHERE state = 'delivered';
CREATE INDEX slots_settled ON slots (settled_at) WHERE settled_at IS NOT NULL;
CREATE INDEX slots_scheduled_by_primary ON slots (primary_prover_id, opens_at) WHERE state = 'scheduled';

-- ---------------------------------------------------------------------------------------------
-- Contracts: a suspended contract's escrow top-up is retried at `escrow_retry_at` (exponential
-- backoff; a deposit by its buyer clears it), so it never sits at the head of the due queue.
-- ---------------------------------------------------------------------------------------------
ALTER TABLE contracts
    ADD COLUMN escrow_retry_at  TIMESTAMPTZ,
    ADD COLUMN escrow_failures  INTEGER NOT NULL DEFAULT 0 CHECK (escrow_failures >= 0);
-- Fully materialised running contracts: the candidates for completion.
CREATE INDEX contracts_to_complete ON contracts (id) WHERE materialise_at IS NULL AND status IN ('active', 'suspended');

-- ---------------------------------------------------------------------------------------------
-- The scheduler's clock: when it last completed a tick, and the gaps (outages) it found. Nothing
-- that expired in an outage is charged to a prover.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE scheduler_clock (
    scheduler       TEXT PRIMARY KEY,
    last_tick_at    TIMESTAMPTZ NOT NULL
);
CREATE TABLE exchange_outages (
    id          BIGSERIAL PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ NOT NULL,
    CHECK (ended_at > started_at)
);
CREATE INDEX exchange_outages_by_end ON exchange_outages (ended_at);

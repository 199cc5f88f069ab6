-- Indexes for the hot paths that scanned, and quotes marked when accepted so that the expired
-- ones nobody accepted can be purged without walking the accepted ones.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.
--
-- Measured with EXPLAIN (ANALYZE, BUFFERS) on a scratch market of 10,000 contracts (2,000,000
-- slots, 200 per contract, settled over the last 58 days; half of the contracts fully
-- materialised; 30,000 expired quotes, 10,000 of them accepted), PostgreSQL 15, 2 vCPUs, warm
-- cache, two runs of each (the ranges below). Plans and figures, before and after: docs/PERFORMANCE.md
-- ("Database: hot-path indexes").

-- ---------------------------------------------------------------------------------------------
-- The scheduler's complete phase (store::progress::to_complete): running contracts with every
-- slot materialised and none live. The NOT EXISTS probed each candidate's slots through the
-- primary key and filtered out its settled ones: one fully materialised contract of 200 slots
-- read ~190 rows to find its first live slot (a one-year contract ~8,700), every tick.
-- Before: nested loop anti join over slots_pkey, 954,813 buffers, 438-465 ms.
-- After: one index-only probe of this index per candidate (4,900), 9,826 buffers, 3.6-7.4 ms.
-- (The candidates now come from contracts_to_complete, index-only, too.)
-- Only live slots are in it (48 per contract with the default horizon), so it stays small while
-- the settled history grows.
-- ---------------------------------------------------------------------------------------------
CREATE INDEX slots_live_by_contract ON slots (contract_id) WHERE state IN ('scheduled', 'proving');

-- ---------------------------------------------------------------------------------------------
-- The oracle's delivery record (store::slots::outcomes_since): delivered and missed slots settled
-- in the last 7 days, per class. slots_settled (0005) found them, but each row was then fetched
-- from the heap, where they lie scattered (slots are written contract by contract and settled
-- hour by hour): 134,365 rows, 38,000 buffers. This index holds the columns the query reads, so it is answered from the index
-- alone: settled slots are final and never updated again, so their pages stay all-visible.
-- Before: bitmap heap scan on slots_settled, 38,120 buffers, 199-229 ms.
-- After: parallel index-only scan, heap fetches 0, 2,417 buffers (1,487 of them the index),
-- 51-60 ms. The price is size: 122 MB for 2,000,000 slots (slots_settled, which it replaces, held
-- settled_at and a row pointer only).
-- It replaces slots_settled: nothing else looks slots up by settled_at (unused and cancelled
-- slots were in it for nobody), and one index fewer on the table every transition writes.
-- ---------------------------------------------------------------------------------------------
CREATE INDEX slots_outcomes_by_settled ON slots (settled_at) INCLUDE (contract_id, state, reason)
    WHERE state IN ('delivered', 'missed');
DROP INDEX slots_settled;

-- ---------------------------------------------------------------------------------------------
-- Contracts by creation time: the oracle's executed prices (store::oracle::executed_since,
-- `created_at >= now - 7 days`) and the operator's list, newest first
-- (store::contracts::list: `ORDER BY created_at DESC, id LIMIT n`), both sequential scans with a
-- sort of every contract. (contracts_by_buyer leads with the buyer: a buyer's own list.)
-- Before: executed_since seq scan of contracts, 459 buffers, 4.4-5.2 ms; admin list seq scan +
-- top-N sort of all 10,000, 292 buffers, 4.9-5.5 ms.
-- After: bitmap index scan, 233 buffers, 2.3-2.9 ms; index scan of the first 100 rows, 6 buffers,
-- 0.04 ms. Both now grow with the contracts returned, not with every contract ever bought.
-- ---------------------------------------------------------------------------------------------
CREATE INDEX contracts_by_created ON contracts (created_at DESC, id);

-- ---------------------------------------------------------------------------------------------
-- Quotes: `accepted_at` is set by the accept that makes the quote a contract (in its
-- transaction, on the row it holds locked), so the purge of expired quotes nobody accepted
-- (store::contracts::purge_expired_quotes, a batch per scheduler tick) reads only those, oldest
-- first, through the partial index; accepted quotes, which contracts reference for ever, are not
-- in it. The purge still checks `contracts.quote_id` (a binary older than this migration accepts
-- without setting the column), and the foreign key stays the last line.
-- Before (no column, no index): seq scan of all quotes, hash anti join with a seq scan of
-- contracts, sort, 1,571 buffers, 16 ms for a batch of 200 out of 30,000 quotes, growing with
-- every quote and contract ever made.
-- After: index scan of the 200 in quotes_to_purge, a probe of contracts_quote_id_key each, the
-- delete by primary key: 1,414 buffers, 4.4 ms (3.2 ms of it the foreign key's own check).
-- ---------------------------------------------------------------------------------------------
ALTER TABLE quotes ADD COLUMN accepted_at TIMESTAMPTZ;
UPDATE quotes q SET accepted_at = c.created_at FROM contracts c WHERE c.quote_id = q.id;
CREATE INDEX quotes_to_purge ON quotes (valid_until) WHERE accepted_at IS NULL;

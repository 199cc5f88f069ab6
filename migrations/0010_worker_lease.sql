-- Background work (the settlement scheduler, oracle publication, purges) runs on one replica at
-- a time: the one holding the lease of its row here. Several `pcx serve` processes share one
-- database; each tries to take or renew the lease every few seconds, and another takes over once
-- the holder has not renewed it for its time to live.
--
-- Fencing: every background transition's transaction first reads its lease row FOR SHARE and
-- checks the holder, the fence and the expiry against the database's clock. A holder that lost
-- the lease (paused, partitioned, killed mid-tick) can therefore commit nothing after the lease
-- passed on; and a takeover (an UPDATE of the row) waits for the transactions that hold the row
-- shared, so no transition of the old holder commits after the new holder's first one.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

CREATE TABLE worker_leases (
    -- What the lease is for (`background`).
    name        TEXT PRIMARY KEY,
    -- The replica holding it: a random id each `pcx serve` process draws at start.
    holder      UUID NOT NULL,
    -- Increases by one each time the lease passes to another holder (never on a renewal), so a
    -- transaction of an earlier holding fails its check even if the same process took it back.
    fence       BIGINT NOT NULL CHECK (fence > 0),
    -- The holder must renew before this (the database's clock, so replicas' clocks do not matter).
    expires_at  TIMESTAMPTZ NOT NULL
);

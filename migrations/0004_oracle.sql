-- The pricing oracle: published rounds per feed, and the operator's halts.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

-- Every published round, signed. (feed_id, round_id) is the primary key: round ids of a feed only
-- increase, and a round is written once. `sources` is what went into it (weights, exclusions and
-- why); `curve` the forward curve computed with it.
CREATE TABLE oracle_rounds (
    feed_id             TEXT NOT NULL,
    round_id            BIGINT NOT NULL CHECK (round_id > 0),
    price               NUMERIC(20, 6),
    conf                NUMERIC(20, 6),
    q50                 NUMERIC(20, 6),
    q80                 NUMERIC(20, 6),
    q95                 NUMERIC(20, 6),
    q99                 NUMERIC(20, 6),
    status              TEXT NOT NULL CHECK (status IN ('ok', 'stale', 'insufficient_sources', 'halted')),
    n_sources           INTEGER NOT NULL,
    published_at        TIMESTAMPTZ NOT NULL,
    valid_until         TIMESTAMPTZ NOT NULL,
    methodology_version INTEGER NOT NULL,
    typed_data          JSONB NOT NULL,
    signature           TEXT NOT NULL,
    sources             JSONB NOT NULL,
    curve               JSONB NOT NULL,
    PRIMARY KEY (feed_id, round_id),
    CHECK ((status = 'ok') = (price IS NOT NULL))
);
CREATE INDEX oracle_rounds_by_time ON oracle_rounds (feed_id, published_at);

-- Feeds the operator halted: they publish `halted` rounds without a price until resumed.
CREATE TABLE oracle_halts (
    feed_id     TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    halted_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

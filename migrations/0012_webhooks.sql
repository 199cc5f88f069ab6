-- Webhooks: the endpoints accounts register, the outbox of the events they are told of, and
-- every delivery attempt.
--
-- The outbox: an event is inserted in the same transaction as the transition it reports (a
-- slot settled, a job offered, a payment), together with one delivery row per endpoint of that
-- account subscribed to its type. So an event exists if and only if its transition committed:
-- none lost (a crash after the commit leaves the delivery pending), none invented (a rollback
-- takes the event with it). The worker-lease holder sends pending deliveries, at least once,
-- with backoff, until they succeed or their retry horizon passes; receivers deduplicate by the
-- event's id (the `webhook-id` header).
--
-- The webhook key that seals endpoint secrets must be the same on every replica: replicas
-- register its fingerprint too (see migration 0011), and one with another key does not start.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

ALTER TABLE replicas ADD COLUMN webhook_key_fingerprint TEXT CHECK (webhook_key_fingerprint ~ '^[0-9a-f]{64}$');

CREATE TABLE webhooks (
    id                UUID PRIMARY KEY,
    account_id        UUID NOT NULL REFERENCES accounts (id),
    -- http(s) URL the events are POSTed to (checked by the exchange: scheme, host, not itself).
    url               TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    -- The event types it receives (their stable names, checked by the exchange).
    events            TEXT[] NOT NULL CHECK (cardinality(events) > 0),
    -- The signing secret, sealed (ChaCha20-Poly1305) under the exchange's webhook key, which is
    -- not in the database: a reader of this table cannot sign as the exchange.
    secret_sealed     BYTEA NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when every delivery failed for the whole retry horizon; the owner sees why.
    disabled_at       TIMESTAMPTZ,
    disabled_reason   TEXT,
    CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
);

CREATE INDEX webhooks_by_account ON webhooks (account_id);

CREATE TABLE webhook_events (
    -- The `webhook-id` receivers deduplicate by (msg_<id>).
    id           UUID PRIMARY KEY,
    -- Increases with each event: within one transaction, and across transactions on the same
    -- rows (the transitions lock them), in the order they happened.
    seq          BIGSERIAL UNIQUE,
    account_id   UUID NOT NULL REFERENCES accounts (id),
    -- The event's type (`slot.delivered`, ...; stable names, checked by the exchange).
    type         TEXT NOT NULL,
    -- What the events of one slot (or job) are ordered by: delivered in `seq` order per endpoint.
    subject      TEXT NOT NULL,
    occurred_at  TIMESTAMPTZ NOT NULL,
    -- When it was written (the database's clock): it is retried until this plus the retry horizon.
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The body's `data`.
    data         JSONB NOT NULL
);

CREATE TABLE webhook_deliveries (
    event_id         UUID NOT NULL REFERENCES webhook_events (id),
    webhook_id       UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- pending until a 2xx (delivered), or until the horizon passes or the endpoint is disabled
    -- (expired).
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'expired')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    -- Not tried again before this (the clock of the replica that failed it, plus backoff).
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    done_at          TIMESTAMPTZ,
    PRIMARY KEY (webhook_id, event_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    id           BIGSERIAL PRIMARY KEY,
    webhook_id   UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id     UUID NOT NULL REFERENCES webhook_events (id),
    attempted_at TIMESTAMPTZ NOT NULL,
    -- The receiver's HTTP status; NULL when none came (connection refused, timeout).
    status       INTEGER,
    latency_ms   INTEGER NOT NULL,
    -- Why it failed, in words (no response body is kept).
    error        TEXT
);

CREATE INDEX webhook_attempts_by_webhook ON webhook_attempts (webhook_id, id DESC);

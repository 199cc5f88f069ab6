-- API keys an owner can list, revoke and rotate: any number of keys per account (the service caps
-- the live ones at 20), each with the first characters of the key to recognise it by, when it was
-- made, last minted a token, and was revoked.
--
-- Until now an account had one key, whose SHA-256 was `accounts.api_key_hash`. This migration
-- moves every such hash here and retires that column, so that `api_keys` is the only place a key
-- is looked up: a key revoked here can never be honoured through the old column.
--   * The column stays (an older binary or a report may still name it) but is emptied, and a CHECK
--     keeps it empty; its UNIQUE constraint, now useless, is dropped. A later migration may drop
--     the column itself once no binary reads it.
--   * Upgrading across this migration: stop the exchanges older than it before (or as) the first
--     new one starts. An old binary still running would answer every API key with 401
--     `invalid_api_key` (its column is empty) and fail registrations (the CHECK); nothing is lost,
--     and its clients' tokens keep working until they expire.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

CREATE TABLE api_keys (
    id              UUID PRIMARY KEY,
    account_id      UUID NOT NULL REFERENCES accounts (id),
    -- The key's first 12 characters (`pcx_` and 8 of its 64 hex digits: 32 of its 256 random
    -- bits, enough to tell keys apart, far too few to use one). NULL for the keys copied below
    -- from `accounts.api_key_hash`: only their hash was ever stored, so their prefix is unknown
    -- (the API shows `prefix: null` for them).
    prefix          TEXT CHECK (length(prefix) BETWEEN 1 AND 32),
    -- SHA-256 of the key (256-bit random, so a fast hash is enough); the key itself is never stored.
    key_hash        BYTEA NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at      TIMESTAMPTZ NOT NULL,
    -- Set once; a revoked key never mints a token again, and the tokens it minted are refused
    -- from that moment (the token carries the key's id, checked on every request).
    revoked_at      TIMESTAMPTZ,
    -- The last time the key was exchanged for a token.
    last_used_at    TIMESTAMPTZ,
    CONSTRAINT api_keys_revoked_after_created CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);

-- An owner's keys (listing, the live-key count that the cap and the last-key rule read).
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at);

-- Every existing key, made when its account was registered.
INSERT INTO api_keys (id, account_id, prefix, key_hash, created_at)
SELECT gen_random_uuid(), id, NULL, api_key_hash, created_at
  FROM accounts
 WHERE api_key_hash IS NOT NULL;

UPDATE accounts SET api_key_hash = NULL WHERE api_key_hash IS NOT NULL;
ALTER TABLE accounts DROP CONSTRAINT accounts_api_key_hash_key;
ALTER TABLE accounts ADD CONSTRAINT accounts_api_key_hash_retired CHECK (api_key_hash IS NULL);

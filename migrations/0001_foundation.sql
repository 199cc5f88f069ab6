-- pcx foundation: accounts, auth, the double-entry ledger, idempotency.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

-- ---------------------------------------------------------------------------------------------
-- Accounts. One row per buyer or prover, plus one row for the exchange itself (role 'exchange',
-- the nil UUID) so that the exchange's ledger accounts have an owner and foreign keys stay simple.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE accounts (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role            TEXT NOT NULL CHECK (role IN ('buyer', 'prover', 'exchange')),
    -- SHA-256 of the API key. Keys are 256-bit random strings, so a fast hash is enough and the
    -- plain key is never stored. NULL for accounts created by wallet login.
    api_key_hash    BYTEA UNIQUE,
    -- Lowercase 0x-prefixed address for accounts that log in with an Ethereum wallet.
    wallet_address  TEXT UNIQUE CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO accounts (id, name, role) VALUES ('00000000-0000-0000-0000-000000000000', 'exchange', 'exchange');

-- ---------------------------------------------------------------------------------------------
-- Ledger accounts: a user has 'available', 'escrow', 'bonded'; the exchange has 'fees',
-- 'insurance', 'external' (the outside world; minus the net deposits).
--
-- `balance` is maintained (by the trigger below) only for user accounts, where the rule "never
-- below zero" must hold at every commit; the CHECK makes the database refuse any posting that
-- would break it, whatever the application does and however many requests race. The exchange's
-- balances are derived from their postings when read: updating them on every movement would
-- serialise all deposits and withdrawals on one hot row.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE ledger_accounts (
    id          BIGSERIAL PRIMARY KEY,
    owner_id    UUID NOT NULL REFERENCES accounts (id),
    kind        TEXT NOT NULL CHECK (kind IN ('available', 'escrow', 'bonded', 'fees', 'insurance', 'external')),
    balance     NUMERIC(20, 6) NOT NULL DEFAULT 0,
    CONSTRAINT ledger_accounts_balance_non_negative CHECK (balance >= 0),
    CONSTRAINT ledger_accounts_owner_kind UNIQUE (owner_id, kind),
    CONSTRAINT ledger_accounts_kind_matches_owner CHECK (
        (owner_id = '00000000-0000-0000-0000-000000000000') = (kind IN ('fees', 'insurance', 'external'))
    )
);

INSERT INTO ledger_accounts (owner_id, kind)
SELECT '00000000-0000-0000-0000-000000000000', k FROM unnest(ARRAY['external', 'fees', 'insurance']) AS k;

-- ---------------------------------------------------------------------------------------------
-- Journal: append-only. Each entry's postings sum to zero, checked at commit by a deferred
-- constraint trigger, so an entry is balanced however its postings were inserted.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE journal_entries (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL,
    -- What the entry settles: "withdrawal:<uuid>", later "slot:<contract>/<n>", "offer:<id>", ...
    reference   TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE postings (
    id                  BIGSERIAL PRIMARY KEY,
    entry_id            BIGINT NOT NULL REFERENCES journal_entries (id),
    ledger_account_id   BIGINT NOT NULL REFERENCES ledger_accounts (id),
    amount              NUMERIC(20, 6) NOT NULL CHECK (amount <> 0)
);
CREATE INDEX postings_by_account ON postings (ledger_account_id, entry_id);
CREATE INDEX postings_by_entry ON postings (entry_id);

-- Applies a posting to the running balance of a user account. The UPDATE takes the row lock, so
-- concurrent movements on one account serialise here and the CHECK sees the latest balance.
CREATE FUNCTION apply_posting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_accounts
       SET balance = balance + NEW.amount
     WHERE id = NEW.ledger_account_id
       AND kind IN ('available', 'escrow', 'bonded');
    RETURN NULL;
END
$$;
CREATE TRIGGER postings_apply AFTER INSERT ON postings
    FOR EACH ROW EXECUTE FUNCTION apply_posting();

CREATE FUNCTION check_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total NUMERIC;
BEGIN
    SELECT sum(amount) INTO total FROM postings WHERE entry_id = NEW.entry_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: postings sum to %', NEW.entry_id, total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_entry_balanced';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER postings_entry_balanced AFTER INSERT ON postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_entry_balanced();

-- The journal is history: nothing in it is ever changed or removed.
CREATE FUNCTION refuse_journal_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the journal is append-only (% on %)', TG_OP, TG_TABLE_NAME;
END
$$;
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_journal_rewrite();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION refuse_journal_rewrite();

-- ---------------------------------------------------------------------------------------------
-- Idempotency keys. A POST with `Idempotency-Key` stores its response in the same transaction as
-- its effect, so a replay either finds the stored response or (if the first attempt rolled back)
-- runs again. `request_hash` tells a replay from a different request under the same key.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE idempotency_keys (
    principal       TEXT NOT NULL,              -- account id, or 'admin'
    key             TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    BYTEA NOT NULL,             -- SHA-256 of method, path and body
    status_code     SMALLINT NOT NULL,
    response        JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);

-- ---------------------------------------------------------------------------------------------
-- Wallet login nonces (EIP-4361): single use, short-lived. The exact message handed out is kept,
-- and a login must present that message, signed by the address it names.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE wallet_nonces (
    nonce           TEXT PRIMARY KEY,
    address         TEXT NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
    role            TEXT NOT NULL CHECK (role IN ('buyer', 'prover')),
    message         TEXT NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    used_at         TIMESTAMPTZ
);

-- ---------------------------------------------------------------------------------------------
-- Generated server secrets (e.g. the JWT signing key when PCX_JWT_SECRET is not set), persisted
-- so that tokens survive a restart. Development convenience: production sets them explicitly.
-- ---------------------------------------------------------------------------------------------
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

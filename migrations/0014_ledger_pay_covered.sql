-- Withdrawals' group statement as a function, planned once per session.
--
-- Measured first (`pcx bench ledger`, 16 clients, a 2-core machine, `perf record -a` over the
-- run): PostgreSQL spent 9 % of the machine planning the group statement of
-- `store::ledger::post_covered` anew at every execution. It is sent alone, outside a
-- transaction (its own transaction, one round trip), so the `SET LOCAL plan_cache_mode` a
-- transaction can begin with is not available to it; and with `plan_cache_mode = auto`
-- PostgreSQL keeps choosing custom plans for statements over array parameters (a custom plan
-- sees each array's length, the generic plan guesses, so the generic one always looks dearer).
-- Forced generic plans for the whole run measured 0.35x -> 0.42x of bare commits.
--
-- A PL/pgSQL function caches its statement's plan for the session, and its `SET` clause forces
-- that plan generic for the function's statement only; every other statement of the session
-- keeps the server's setting. The statement is the one `post_covered` sent before, unchanged:
--
-- * `wanted`: the payments, in order (n).
-- * `authorised`: those whose API key (if one is named) is a live key of the payer's.
-- * `locked`: the authorised payers' available balances, locked in ledger-account order (the
--   order every movement locks in, so concurrent movements cannot deadlock).
-- * `entries`: an entry for each payment its locked balance covers, in payment order.
-- * `posted`: those entries' postings, in ledger-account order; the ledger's statement triggers
--   (0013) apply them to balances and check each entry sums to zero, and the CHECK
--   `ledger_accounts_balance_non_negative` still stands behind the coverage test.
-- * one row per payment, in order: its reference, its entry (NULL if not covered), the payer's
--   available balance before it (NULL if no such account), escrow and bonded balances, the
--   count of postings written (the caller checks it against the entries'), whether it was
--   authorised.
--
-- Payers must be distinct within one call (a payer's second payment would be checked against
-- the balance before its first); the caller guarantees it.
--
-- Reviewed artifact: never edit after it lands; add a new migration instead.

CREATE FUNCTION ledger_pay_covered(
    entry_kinds      TEXT[],
    entry_references TEXT[],
    payers           UUID[],
    payer_amounts    NUMERIC[],
    payer_keys       UUID[],
    posting_references TEXT[],
    posting_owners   UUID[],
    posting_kinds    TEXT[],
    posting_amounts  NUMERIC[]
) RETURNS TABLE (
    reference  TEXT,
    entry_id   BIGINT,
    created_at TIMESTAMPTZ,
    available  NUMERIC,
    escrow     NUMERIC,
    bonded     NUMERIC,
    postings   BIGINT,
    authorised BOOLEAN
)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH wanted AS (
        SELECT * FROM unnest(entry_kinds, entry_references, payers, payer_amounts, payer_keys) WITH ORDINALITY
               AS w (kind, reference, payer, amount, key, n)
    ), authorised AS (
        SELECT * FROM wanted w
         WHERE w.key IS NULL
            OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = w.key AND k.account_id = w.payer AND k.revoked_at IS NULL)
    ), locked AS (
        SELECT owner_id, balance FROM ledger_accounts
         WHERE owner_id IN (SELECT payer FROM authorised) AND kind = 'available'
         ORDER BY id
           FOR NO KEY UPDATE
    ), entries AS (
        INSERT INTO journal_entries (kind, reference)
        SELECT w.kind, w.reference FROM authorised w JOIN locked l ON l.owner_id = w.payer
         WHERE w.amount <= l.balance
         ORDER BY w.n
        RETURNING id, reference, created_at
    ), posted AS (
        INSERT INTO postings (entry_id, ledger_account_id, amount)
        SELECT entries.id, la.id, p.amount
          FROM unnest(posting_references, posting_owners, posting_kinds, posting_amounts) AS p (reference, owner_id, kind, amount)
               JOIN entries ON entries.reference = p.reference
               JOIN ledger_accounts la ON la.owner_id = p.owner_id AND la.kind = p.kind
         ORDER BY la.id
        RETURNING entry_id
    )
    SELECT w.reference, e.id, e.created_at, l.balance,
           (SELECT la.balance FROM ledger_accounts la WHERE la.owner_id = w.payer AND la.kind = 'escrow'),
           (SELECT la.balance FROM ledger_accounts la WHERE la.owner_id = w.payer AND la.kind = 'bonded'),
           (SELECT count(*) FROM posted),
           w.n IN (SELECT a.n FROM authorised a)
      FROM wanted w
           LEFT JOIN locked l ON l.owner_id = w.payer
           LEFT JOIN entries e ON e.reference = w.reference
     ORDER BY w.n;
END
$$;

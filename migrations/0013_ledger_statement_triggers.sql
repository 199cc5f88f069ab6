-- Money movements with two trigger calls per statement instead of two per posting.
--
-- Measured first (`pcx bench ledger`, 16 clients, a 2-core machine, `perf record -a` over the
-- run): PostgreSQL took 61 % of the machine and spent about a quarter of that in the ledger's
-- triggers. `postings_apply` (0001) was a row trigger: one plpgsql call and one UPDATE of
-- ledger_accounts per posting. `postings_entry_balanced` (0001) was a deferred row constraint
-- trigger: at commit, one plpgsql call and one SUM over the entry's postings per posting. A
-- withdrawal (two postings) paid four trigger calls, a slot's settlement (up to seven postings)
-- fourteen.
--
-- Both become statement triggers over the statement's new postings (a transition table):
--
-- * postings_apply_statement: locks the touched balances in ledger-account order (the order every
--   movement locks in, so concurrent movements cannot deadlock), then one UPDATE adds each
--   account's summed postings. The CHECK `ledger_accounts_balance_non_negative` still refuses an
--   overdraft, now on the statement's net change per account (an entry never posts to one account
--   twice, so for every entry the application writes this is the same as posting by posting).
--
-- * postings_balanced_statement: every entry the statement posted to must sum to zero over the
--   statement's postings, checked when the statement ends. By induction this is the deferred
--   check's rule, and stronger: each statement leaves every entry it touched balanced, so every
--   entry is balanced after every statement, not only at commit. The application inserts an
--   entry's postings in one statement (store::ledger::post); an entry split over statements is
--   now refused at its first statement. The error is the same: check_violation, constraint
--   postings_entry_balanced.
--
-- The append-only triggers (0001) and the foreign keys stay as they are.
-- ---------------------------------------------------------------------------------------------

DROP TRIGGER postings_apply ON postings;
DROP TRIGGER postings_entry_balanced ON postings;
DROP FUNCTION apply_posting();
DROP FUNCTION check_entry_balanced();

CREATE FUNCTION apply_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Lock first, in id order: the UPDATE's join would lock in whatever order its plan visits.
    PERFORM 1 FROM ledger_accounts
      WHERE id IN (SELECT ledger_account_id FROM new_postings)
        AND kind IN ('available', 'escrow', 'bonded')
      ORDER BY id
        FOR NO KEY UPDATE;
    UPDATE ledger_accounts la
       SET balance = la.balance + d.delta
      FROM (SELECT ledger_account_id, sum(amount) AS delta FROM new_postings GROUP BY ledger_account_id) d
     WHERE la.id = d.ledger_account_id
       AND la.kind IN ('available', 'escrow', 'bonded');
    RETURN NULL;
END
$$;
CREATE TRIGGER postings_apply_statement AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION apply_postings();

CREATE FUNCTION check_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced RECORD;
BEGIN
    SELECT entry_id, sum(amount) AS total INTO unbalanced
      FROM new_postings GROUP BY entry_id HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % is unbalanced: postings sum to %', unbalanced.entry_id, unbalanced.total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_entry_balanced';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER postings_balanced_statement AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION check_entries_balanced();

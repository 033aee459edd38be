-- Price history becomes a table partitioned by month of `as_of`, each entry carrying its sanity
-- hold state. Its primary key (provider_id, asset_id, as_of) contains the partition key, so the
-- guarded upsert and every read work unchanged on the parent table.
--
-- A month is added with `SELECT price_history_add_month('2027-01-01')` (rows already sitting in
-- the default partition for that month are moved into it) and dropped with
-- `SELECT price_history_drop_month('2025-01-01')` (detach, then drop: its ticks are gone). The
-- pricing service calls `price_history_ensure_months` at start and every few hours, so months
-- are created before their first tick; ticks older than the oldest month land in the default
-- partition.
ALTER TABLE price_history RENAME TO price_history_unpartitioned;
ALTER INDEX price_history_pkey RENAME TO price_history_unpartitioned_pkey;

CREATE TABLE price_history (
    provider_id  text NOT NULL,
    asset_id     text NOT NULL,
    as_of        timestamptz NOT NULL,
    amount       numeric NOT NULL CHECK (amount > 0),
    currency     char(3) NOT NULL,
    accepted_at  timestamptz NOT NULL,
    event_id     uuid NOT NULL,
    -- visible: shown to investors; held: a sanity check stopped it (hold_kind, hold_reason);
    -- released: an operator let a held tick through; rejected: an operator refused it (kept so
    -- that a redelivery of the same tick stays refused).
    state        text NOT NULL DEFAULT 'visible'
                 CHECK (state IN ('visible', 'held', 'released', 'rejected')),
    hold_kind    text CHECK (hold_kind IN ('jump', 'currency')),
    hold_reason  text,
    held_at      timestamptz,
    PRIMARY KEY (provider_id, asset_id, as_of)
) PARTITION BY RANGE (as_of);

CREATE TABLE price_history_default PARTITION OF price_history DEFAULT;

-- Operators list held ticks across every month without scanning history.
CREATE INDEX price_history_held ON price_history (provider_id, held_at) WHERE state = 'held';

INSERT INTO price_history (provider_id, asset_id, as_of, amount, currency, accepted_at, event_id)
SELECT provider_id, asset_id, as_of, amount, currency, accepted_at, event_id
FROM price_history_unpartitioned;
DROP TABLE price_history_unpartitioned;

-- Adds the partition of the month containing `month`; false when it exists already. Concurrent
-- callers serialise on an advisory lock; rows of that month in the default partition move in.
CREATE FUNCTION price_history_add_month(in_month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    first_day  timestamptz := date_trunc('month', in_month::timestamp) AT TIME ZONE 'UTC';
    next_day   timestamptz := (date_trunc('month', in_month::timestamp) + interval '1 month')
                              AT TIME ZONE 'UTC';
    part       text := 'price_history_' || to_char(in_month, 'YYYY_MM');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('rwasync.price_history.partitions'));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- Inserts must not reach the default partition between the move and the attach.
    LOCK TABLE price_history_default IN SHARE ROW EXCLUSIVE MODE;
    EXECUTE format('CREATE TABLE %I (LIKE price_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part);
    EXECUTE format('WITH moved AS (DELETE FROM price_history_default WHERE as_of >= %L AND as_of < %L'
                   ' RETURNING *) INSERT INTO %I SELECT * FROM moved', first_day, next_day, part);
    EXECUTE format('ALTER TABLE price_history ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, first_day, next_day);
    RETURN true;
END $$;

-- Drops the partition of the month containing `month` and its ticks; false when there is none.
CREATE FUNCTION price_history_drop_month(in_month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'price_history_' || to_char(in_month, 'YYYY_MM');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('rwasync.price_history.partitions'));
    IF to_regclass(part) IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('ALTER TABLE price_history DETACH PARTITION %I', part);
    EXECUTE format('DROP TABLE %I', part);
    RETURN true;
END $$;

-- Makes sure the months from `months_back` before the current one to `months_ahead` after it
-- exist; returns how many were added.
CREATE FUNCTION price_history_ensure_months(months_back int, months_ahead int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    added int := 0;
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
BEGIN
    FOR i IN -months_back..months_ahead LOOP
        IF price_history_add_month((this_month + make_interval(months => i))::date) THEN
            added := added + 1;
        END IF;
    END LOOP;
    RETURN added;
END $$;

SELECT price_history_ensure_months(1, 3);

-- Sanity-hold policies, off until an operator sets one for a provider: a tick moving more than
-- `max_jump` (a ratio: 0.5 = 50 %) from the previous visible price in as_of order, or, with
-- `currency_check`, quoted in another currency than its asset's, is held.
CREATE TABLE price_policies (
    provider_id     text PRIMARY KEY REFERENCES providers (provider_id),
    max_jump        numeric CHECK (max_jump > 0),
    currency_check  boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

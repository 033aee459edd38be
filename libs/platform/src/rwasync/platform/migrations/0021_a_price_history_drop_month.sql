-- `price_history_drop_month` dropped a month only when it had a partition of its own. Ticks of a
-- month older than the partitions pricing keeps (one month back), such as a backfilled history,
-- sit in the default partition, and there it returned false and dropped nothing, while an
-- operator following the README believed them gone. It now drops the month's ticks wherever
-- they are, and answers how many it dropped (0: the month held none).
DROP FUNCTION price_history_drop_month(date);

CREATE FUNCTION price_history_drop_month(in_month date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    first_day  timestamptz := date_trunc('month', in_month::timestamp) AT TIME ZONE 'UTC';
    next_day   timestamptz := (date_trunc('month', in_month::timestamp) + interval '1 month')
                              AT TIME ZONE 'UTC';
    part       text := 'price_history_' || to_char(in_month, 'YYYY_MM');
    dropped    bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('rwasync.price_history.partitions'));
    IF to_regclass(part) IS NULL THEN
        DELETE FROM price_history_default WHERE as_of >= first_day AND as_of < next_day;
        GET DIAGNOSTICS dropped = ROW_COUNT;
        RETURN dropped;
    END IF;
    EXECUTE format('SELECT count(*) FROM %I', part) INTO dropped;
    EXECUTE format('ALTER TABLE price_history DETACH PARTITION %I', part);
    EXECUTE format('DROP TABLE %I', part);
    RETURN dropped;
END $$;

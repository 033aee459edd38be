-- Every change of an asset's latest price, for the investor stream and its `Last-Event-ID`
-- resume across replicas. `xid` is the writing transaction's id: a change is handed out only
-- once every transaction with a smaller id has ended (`xid < pg_snapshot_xmin(...)`), so that
-- readers see changes in (xid, change_id) order with none missed or repeated even when
-- transactions commit out of id order. Kept about a day; `price_change_trim` remembers the
-- newest change removed, so an older resume point is answered with a reset.
CREATE TABLE price_changes (
    xid          bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    change_id    bigint GENERATED ALWAYS AS IDENTITY (CACHE 64),
    provider_id  text NOT NULL,
    asset_id     text NOT NULL,
    amount       numeric NOT NULL,
    currency     char(3) NOT NULL,
    as_of        timestamptz NOT NULL,
    accepted_at  timestamptz NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (xid, change_id)
);
CREATE INDEX price_changes_changed_at ON price_changes (changed_at);

CREATE TABLE price_change_trim (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    xid        bigint NOT NULL,
    change_id  bigint NOT NULL
);
INSERT INTO price_change_trim (xid, change_id) VALUES (0, 0);
-- A subscriber's replay reads its own provider's changes after its resume point.
CREATE INDEX price_changes_provider ON price_changes (provider_id, xid, change_id);

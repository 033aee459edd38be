-- Prices, owned and written only by the pricing service. `asset_prices` holds the latest price
-- per asset, guarded by (as_of, accepted_at); `price_history` one row per (asset, as_of), its
-- primary key leading with the partition-ready time column's companions.
CREATE TABLE asset_prices (
    provider_id  text NOT NULL,
    asset_id     text NOT NULL,
    amount       numeric NOT NULL CHECK (amount > 0),
    currency     char(3) NOT NULL,
    as_of        timestamptz NOT NULL,
    accepted_at  timestamptz NOT NULL,
    event_id     uuid NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider_id, asset_id)
);

CREATE TABLE price_history (
    provider_id  text NOT NULL,
    asset_id     text NOT NULL,
    as_of        timestamptz NOT NULL,
    amount       numeric NOT NULL CHECK (amount > 0),
    currency     char(3) NOT NULL,
    accepted_at  timestamptz NOT NULL,
    event_id     uuid NOT NULL,
    PRIMARY KEY (provider_id, asset_id, as_of)
);

CREATE VIEW latest_prices AS
SELECT provider_id, asset_id, amount, currency, as_of, accepted_at, event_id, applied_at
FROM asset_prices;

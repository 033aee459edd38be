-- Every applied tick updates its asset's row in `asset_prices` (amount, as_of, ... but never the
-- key). With full pages such an update cannot stay on its page (no HOT update), so it also adds
-- a primary-key entry and leaves the table to bloat: 5 % of updates were HOT in a sustained run
-- over 10,000 assets, 97–99 % with half of each page kept free, and the backend spent 3–6 µs less
-- a tick (docs/performance.md, "Round 4"). Pages written from now on keep the room; the table is
-- small (one row per asset), and existing pages move over as their rows are updated.
ALTER TABLE asset_prices SET (fillfactor = 50);

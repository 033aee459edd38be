-- Which claim of an Idempotency-Key holds it: drawn by the request that claims the key, and
-- required by its answer and its release, so a request whose claim another one took over (its
-- lease ran out) can neither store its answer under the other's request nor give the key back.
-- NULL on claims made by the previous release, which stores and releases them as it always did.
ALTER TABLE idempotency_keys ADD COLUMN claim_id uuid;

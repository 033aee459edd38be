-- Partner credentials: a partner (an integrator) acts for several providers with one credential
-- and names the provider of each request in `X-Tenant-Id`. A credential belongs either to one
-- provider or to one partner. A partner may act only for the providers it was granted.
CREATE TABLE partners (
    partner_id  text PRIMARY KEY,
    name        text NOT NULL,
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE partner_providers (
    partner_id   text NOT NULL REFERENCES partners (partner_id),
    provider_id  text NOT NULL REFERENCES providers (provider_id),
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, provider_id)
);

ALTER TABLE provider_credentials
    ALTER COLUMN provider_id DROP NOT NULL,
    ADD COLUMN partner_id text REFERENCES partners (partner_id),
    ADD CONSTRAINT provider_credentials_one_owner
        CHECK ((provider_id IS NULL) <> (partner_id IS NULL));
CREATE INDEX provider_credentials_partner ON provider_credentials (partner_id);

-- The provider API's request rate per provider (a token bucket: `rate_per_second` sustained,
-- `rate_burst` at once); NULL means ingest-api's configured default.
ALTER TABLE providers
    ADD COLUMN rate_per_second double precision CHECK (rate_per_second > 0),
    ADD COLUMN rate_burst integer CHECK (rate_burst >= 1);

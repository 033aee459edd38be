-- Merge patches (`asset.patched`) get receipts like every other asset event.
ALTER TABLE event_receipts DROP CONSTRAINT event_receipts_type_check;
ALTER TABLE event_receipts ADD CONSTRAINT event_receipts_type_check
    CHECK (type IN ('asset.upserted', 'asset.patched', 'asset.deleted', 'price.updated'));

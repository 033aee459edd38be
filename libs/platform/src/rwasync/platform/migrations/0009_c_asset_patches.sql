-- Merge patches are kept above the newest full state (upsert or deletion) they apply onto, so that
-- an older change arriving late is folded in version order (docs/architecture.md, "Patches").
-- NULL (almost every row): no patch is kept and the row itself is its base.
ALTER TABLE assets ADD COLUMN patch_state jsonb;

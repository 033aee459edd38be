-- Whether a provider's sanity policy judged the tick when pricing applied it. A late tick makes
-- the rule check the ticks after it again; those applied while the provider had no policy keep
-- the state they were applied with (docs/api.md 3.8: a policy applies to ticks applied from then
-- on). Without the mark, a policy set today held months of prices investors had already seen,
-- on the first late tick (investor trial). Entries already stored were judged as they would be
-- now (true: the rule as before); from here on the policy-free path leaves the default, false,
-- and the checked path writes true.
ALTER TABLE price_history ADD COLUMN policed boolean NOT NULL DEFAULT true;
ALTER TABLE price_history ALTER COLUMN policed SET DEFAULT false;

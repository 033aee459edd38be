"""The reconciler: the only writer of asset state; applies asset events idempotently."""

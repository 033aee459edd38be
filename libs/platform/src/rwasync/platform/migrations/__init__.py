"""Ordered SQL migrations, applied by `rwasync migrate` (see rwasync.platform.migrate)."""

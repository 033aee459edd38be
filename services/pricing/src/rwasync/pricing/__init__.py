"""Pricing: applies price ticks (latest guarded by as_of, every tick in history) and serves the
investor price API."""

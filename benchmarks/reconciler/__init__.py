"""The reconciler's apply rate, measured against the raw limit of the same rows in the same run:
`.venv/bin/python -m benchmarks.reconciler [--events 100000] [--per-message 500]`."""

"""ingest-api's benchmark: `.venv/bin/python -m benchmarks.ingest --help`."""

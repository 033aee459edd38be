"""ingest-api: the provider push API; validates, publishes confirmed events, records receipts."""

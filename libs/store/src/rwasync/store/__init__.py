"""The tables several deployables share, and the one place their statements live.

Each service owns its own tables and keeps their statements in its `queries.py`; what is here is
shared by contract: the receipts ledger (written by ingest-api, decided by the consumers, read by
providers and operators), credentials (issued by the CLI, checked by the HTTP services) and feed
requests (made by the CLI and the provider's feed API, carried out by the poller).
"""

"""The feed poller: pulls providers' feed snapshots, publishes the differences as events."""

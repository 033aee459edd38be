"""Reading a provider's feed, shared by the feed poller (real runs) and the provider API (the
validation preview): the guarded download, the format readers, item validation with cheap
fingerprints, the snapshot comparison, feed credentials and schedules. No service imports
another, so what both need lives here.
"""

"""Plumbing shared by rwasync services: settings, logging, connections, migrations, the CLI."""

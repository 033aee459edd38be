"""Plumbing shared by rwasync services: settings, logging, connections, HTTP problems, migrations, CLI."""

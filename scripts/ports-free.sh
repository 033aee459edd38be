#!/usr/bin/env bash
# Fail early, with a clear message, when a port `make run` needs is already taken (usually by
# another `make run`), instead of letting one service die on start-up and honcho stop the rest.
set -euo pipefail

busy=()
for port in "$@"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=("$port"); fi
done
if [ ${#busy[@]} -gt 0 ]; then
  echo "port(s) ${busy[*]} on 127.0.0.1 already in use: is another \`make run\` still running?" \
    "Stop it, or move the services with RWASYNC_INGEST_PORT, RWASYNC_FEED_POLLER_PORT," \
    "RWASYNC_PRICING_PORT, RWASYNC_RECONCILER_PORT and DEMO_FEED_PORT." >&2
  exit 1
fi

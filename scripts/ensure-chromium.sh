#!/usr/bin/env bash
# Make sure Debian's Chromium and ChromeDriver are installed, for the browser test of the live
# price page (`make test` calls this, as CI installs everything itself). Browser builds cannot be
# downloaded here, so only the distribution's packages are used; an installed pair is left alone.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "chromium and chromedriver are missing and this is not a Debian-like system: install" \
    "them (packages chromium, chromium-driver) to run the browser test" >&2
  exit 1
fi
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to install chromium and chromium-driver: $*" >&2; return 1; fi
}
echo "installing chromium and chromium-driver from Debian packages" >&2
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null

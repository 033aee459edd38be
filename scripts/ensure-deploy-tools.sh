#!/usr/bin/env bash
# The tools the deployment tests need without a Docker engine, installed from Debian packages when
# missing: docker-compose (validates docker-compose.yml) and Caddy (validates and runs the gateway's
# Caddyfile). Caddy is unpacked into the virtualenv rather than installed, so that no caddy service
# is set up or started on the machine. Usage: ensure-deploy-tools.sh VENV
set -euo pipefail
venv=$1
caddy_dir="$venv/deploy-tools/caddy"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

need_apt() {
  if ! command -v apt-get >/dev/null; then
    echo "$1 is missing and this is not a Debian-like system: install it yourself" >&2
    exit 1
  fi
}

if ! command -v docker-compose >/dev/null; then
  need_apt docker-compose
  echo "installing docker-compose from Debian packages (no Docker engine is needed)" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi

if [ ! -x "$caddy_dir/usr/bin/caddy" ]; then
  need_apt caddy
  echo "unpacking caddy from its Debian package into $caddy_dir" >&2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if ! (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root caddy 2>/dev/null); then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root caddy)
  fi
  mkdir -p "$caddy_dir"
  dpkg-deb -x "$work"/caddy_*.deb "$caddy_dir"
fi

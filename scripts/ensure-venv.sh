#!/usr/bin/env bash
# Create the virtualenv at $2 with the interpreter $1; on Debian/Ubuntu, where the venv module
# ships separately (python3.X-venv), install it from the distribution's packages when missing.
set -euo pipefail
python=$1 venv=$2
[ -x "$venv/bin/pip" ] && exit 0
if ! "$python" -m venv "$venv" 2>/dev/null; then
  rm -rf "$venv"
  if ! command -v apt-get >/dev/null; then
    echo "$python cannot create a virtualenv (the venv module is missing)" >&2
    exit 1
  fi
  version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "installing python$version-venv from Debian packages" >&2
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$version-venv" >/dev/null
  "$python" -m venv "$venv"
fi

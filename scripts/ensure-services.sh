#!/usr/bin/env bash
# Make sure Postgres (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672) answer: start them if they
# are stopped, install them from Debian packages if they are missing. Never stops or resets them.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local port=$1 name=$2
  for _ in $(seq 1 60); do answers "$port" && return 0; sleep 1; done
  echo "$name did not answer on 127.0.0.1:$port within 60 s" >&2
  return 1
}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! answers 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL from Debian packages" >&2
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main
  # Local development: trust loopback connections, as the services' defaults expect.
  if ! grep -q "rwasync" "$conf/pg_hba.conf"; then
    as_root sed -i '1i # rwasync local development\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$conf/pg_hba.conf"
  fi
  echo "starting PostgreSQL $version" >&2
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for 5432 PostgreSQL
fi

if ! answers 5672; then
  if ! command -v rabbitmq-server >/dev/null; then
    echo "installing RabbitMQ from Debian packages" >&2
    apt_install rabbitmq-server
  fi
  echo "starting RabbitMQ" >&2
  as_root rabbitmq-server -detached || true
  wait_for 5672 RabbitMQ
  # The listener opens before the node finishes booting; wait until it serves.
  for _ in $(seq 1 60); do as_root rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
fi
echo "PostgreSQL and RabbitMQ answer on 127.0.0.1" >&2

#!/usr/bin/env bash
# Make sure Postgres (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672) answer, for `make run` and
# `make test`: start them if they are stopped, install them from Debian packages if they are
# missing. A server that already answers is left exactly as it is; nothing is stopped or reset.
set -euo pipefail

# Debian keeps the server tools in sbin, which an ordinary user's PATH often lacks.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
TRUST_MARKER="# rwasync local development"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local port=$1 name=$2 hint=$3
  for _ in $(seq 1 60); do answers "$port" && return 0; sleep 1; done
  echo "$name did not answer on 127.0.0.1:$port within 60 s; $hint" >&2
  exit 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "need root for: $* (run as root or install sudo)" >&2
    return 1
  fi
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "$* is missing and this is not a Debian-like system: install it and start it on" \
      "127.0.0.1 yourself, or point RWASYNC_DATABASE_URL / RWASYNC_AMQP_URL elsewhere" >&2
    exit 1
  fi
  echo "installing $* from Debian packages" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The cluster configured for port 5432, as "VERSION NAME" (empty when there is none).
cluster_on_5432() { pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 { print $1, $2; exit }'; }

cluster_online() {
  pg_lsclusters -h 2>/dev/null |
    awk -v v="$1" -v c="$2" '$1 == v && $2 == c && $4 == "online" { up = 1 } END { exit !up }'
}

ensure_postgres() {
  answers 5432 && return 0
  local fresh=false
  if ! command -v pg_lsclusters >/dev/null ||
    ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql # creates and starts (where it can) a cluster `main` on port 5432
    fresh=true
  fi
  if [ -z "$(cluster_on_5432)" ] && [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    # Server binaries without any cluster: create the one the package would have created.
    local newest
    newest=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    echo "creating PostgreSQL cluster $newest/main" >&2
    as_root pg_createcluster "$newest" main >/dev/null
    fresh=true
  fi
  local version cluster
  read -r version cluster <<<"$(cluster_on_5432)" || true
  if [ -z "${version:-}" ]; then
    echo "PostgreSQL is installed but no cluster is configured for port 5432 (pg_lsclusters);" \
      "start yours on 127.0.0.1:5432 or set RWASYNC_DATABASE_URL" >&2
    exit 1
  fi
  local hba=/etc/postgresql/$version/$cluster/pg_hba.conf
  # The default DSN (postgresql://postgres@127.0.0.1:5432/rwasync) has no password, so a cluster
  # made here trusts loopback TCP. A cluster of yours keeps its own authentication rules.
  if $fresh && ! as_root grep -qF "$TRUST_MARKER" "$hba"; then
    local rules="$TRUST_MARKER\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust"
    as_root sed -i "1i $rules" "$hba"
    if cluster_online "$version" "$cluster"; then
      as_root pg_ctlcluster "$version" "$cluster" reload
    fi
  fi
  if ! answers 5432; then
    echo "starting PostgreSQL $version/$cluster" >&2
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start ||
      echo "pg_ctlcluster could not start $version/$cluster" >&2
  fi
  wait_for 5432 PostgreSQL "see /var/log/postgresql/postgresql-$version-$cluster.log"
}

# A server that answers but refuses the password-less default login would only fail later, in
# `rwasync migrate`, with a less helpful message.
check_postgres_login() {
  command -v psql >/dev/null || return 0
  local dsn="postgresql://postgres@127.0.0.1:5432/postgres"
  if ! PGCONNECT_TIMEOUT=5 psql -w "$dsn" -Atqc "SELECT 1" >/dev/null 2>&1; then
    echo "warning: PostgreSQL on 127.0.0.1:5432 refuses user postgres without a password;" \
      "the default RWASYNC_DATABASE_URL needs 'host all all 127.0.0.1/32 trust' in pg_hba.conf," \
      "or set RWASYNC_DATABASE_URL (and RWASYNC_TEST_POSTGRES_URL) with credentials" >&2
  fi
}

ensure_rabbitmq() {
  answers 5672 && return 0
  if ! command -v rabbitmq-server >/dev/null; then
    apt_install rabbitmq-server
  fi
  if ! answers 5672; then
    echo "starting RabbitMQ" >&2
    as_root rabbitmq-server -detached || echo "rabbitmq-server -detached failed" >&2
  fi
  wait_for 5672 RabbitMQ "see /var/log/rabbitmq/"
  # The listener opens before the node finishes booting; wait until it serves.
  for _ in $(seq 1 60); do
    as_root rabbitmqctl -q await_startup >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "RabbitMQ listens on 127.0.0.1:5672 but did not finish booting within 60 s" >&2
  exit 1
}

ensure_postgres
check_postgres_login
ensure_rabbitmq
echo "PostgreSQL and RabbitMQ answer on 127.0.0.1" >&2

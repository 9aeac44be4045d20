#!/usr/bin/env bash
# Makes sure the servers the test suites need are up: RabbitMQ (AMQP on 127.0.0.1:5672) and
# PostgreSQL (127.0.0.1:5432, database `test`, user postgres). A server that does not answer is
# started, then awaited; one that never comes up fails the run with a message naming it.
# Called by .ci/run before anything slow, so a missing server fails fast; run it by hand with
#   bash .ci/services.sh
#
# Knobs (environment): BOTQUEUE_SERVICES_WAIT (seconds to wait per server, default 60),
# BOTQUEUE_RABBITMQ_PORT (5672), BOTQUEUE_PG_PORT (5432), BOTQUEUE_PG_DB (test), BOTQUEUE_PG_USER
# (postgres). RABBITMQ_NODENAME and the other RABBITMQ_* variables reach rabbitmq-server and
# rabbitmq-diagnostics as usual.
set -euo pipefail

WAIT="${BOTQUEUE_SERVICES_WAIT:-60}"
RABBITMQ_PORT="${BOTQUEUE_RABBITMQ_PORT:-5672}"
PG_PORT="${BOTQUEUE_PG_PORT:-5432}"
PG_DB="${BOTQUEUE_PG_DB:-test}"
PG_USER="${BOTQUEUE_PG_USER:-postgres}"
HOST=127.0.0.1

say() { printf 'services: %s\n' "$*"; }
# die HEADLINE [DETAIL...]: a banner naming what failed, then the details as they are.
die() {
  local bar='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
  printf '\n%s\n!!! FATAL: %s\n%s\n' "$bar" "$1" "$bar" >&2
  shift
  if (($# > 0)); then printf '%s\n' "$@" >&2; fi
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# newest_log DIR: the most recently written *.log in DIR (upgrade logs aside), or nothing.
newest_log() {
  local f newest=""
  for f in "$1"/*.log; do
    [[ -f "$f" && "$f" != *_upgrade.log ]] || continue
    if [[ -z "$newest" || "$f" -nt "$newest" ]]; then newest="$f"; fi
  done
  printf '%s' "$newest"
}

# --- RabbitMQ ---------------------------------------------------------------------------------

# True when the port speaks AMQP: an open port is not enough (the Erlang VM may be up while the
# broker still boots), so send the AMQP 0-9-1 header and expect a Connection.Start method frame:
# type 01, channel 0000, a 4-byte size, then class 10 / method 10 (000a 000a).
# Needs nothing but bash, so it works before npm ci.
rabbitmq_speaks_amqp() {
  local reply
  # shellcheck disable=SC2016 # $0 and $1 are the inner shell's arguments
  reply="$(timeout 5 bash -c '
      exec 3<>"/dev/tcp/$0/$1" || exit 1
      printf "AMQP\x00\x00\x09\x01" >&3
      head -c 11 <&3 | od -An -tx1 | tr -d " \n"
    ' "$HOST" "$RABBITMQ_PORT" 2>/dev/null)" || return 1
  [[ "$reply" =~ ^010000[0-9a-f]{8}000a000a$ ]]
}

# True when a RabbitMQ node (the default one, or RABBITMQ_NODENAME) is running, even if still booting.
rabbitmq_node_runs() {
  have rabbitmq-diagnostics && timeout 30 rabbitmq-diagnostics -q ping >/dev/null 2>&1
}

# The first [error] lines of the last boot (the cause; later ones are consequences), the log's
# tail and the Debian wrapper's startup files.
rabbitmq_log_tail() {
  local dir="${RABBITMQ_LOG_BASE:-/var/log/rabbitmq}" log
  log="$(newest_log "$dir")"
  if [[ -n "$log" && -r "$log" ]]; then
    printf '%s\n' "--- first [error] lines since the last boot in $log ---"
    awk '/Starting RabbitMQ [0-9]/ { n = 0 } /\[error\]/ && n < 8 { e[n++] = $0 } END { for (i = 0; i < n; i++) print e[i] }' "$log" | cut -c1-300
    printf '%s\n' "--- last 20 lines of $log ---"
    tail -n 20 "$log" | cut -c1-300
  fi
  for f in "$dir/startup_err" "$dir/startup_log"; do
    if [[ -s "$f" ]]; then
      printf '%s\n' "--- $f ---"
      tail -n 15 "$f"
    fi
  done
}

ensure_rabbitmq() {
  if rabbitmq_speaks_amqp; then
    say "RabbitMQ is up ($HOST:$RABBITMQ_PORT speaks AMQP)"
    return 0
  fi
  if rabbitmq_node_runs; then
    # Booting, or up without its AMQP listener yet: starting a second instance would only fail.
    say "RabbitMQ node is running but $HOST:$RABBITMQ_PORT does not speak AMQP yet; waiting up to ${WAIT}s"
  else
    have rabbitmq-server || die "RabbitMQ is not answering on $HOST:$RABBITMQ_PORT and rabbitmq-server is not installed"
    # Debian's rabbitmq-server is a wrapper that only works for root or rabbitmq; for anyone else it
    # runs the server in the foreground, ignoring -detached, and this script would hang.
    if ((EUID != 0)) && [[ "$(id -un)" != rabbitmq ]] && grep -qs 'su rabbitmq' "$(command -v rabbitmq-server)"; then
      die "RabbitMQ is not answering on $HOST:$RABBITMQ_PORT; start it as root: sudo rabbitmq-server -detached"
    fi
    say "RabbitMQ is not answering on $HOST:$RABBITMQ_PORT; starting it (rabbitmq-server -detached)"
    rabbitmq-server -detached </dev/null || die "RabbitMQ: 'rabbitmq-server -detached' failed" "$(rabbitmq_log_tail)"
  fi
  local started=$SECONDS next_ping=$((SECONDS + 15))
  until rabbitmq_speaks_amqp; do
    # A node that died while booting (port taken, bad config) will not come up: say so now rather
    # than after WAIT. Not in the first seconds, where ping fails as distribution is not up yet.
    if ((SECONDS >= next_ping)); then
      next_ping=$((SECONDS + 5))
      rabbitmq_node_runs ||
        die "RabbitMQ did not come up: the node stopped while booting ($HOST:$RABBITMQ_PORT never spoke AMQP)" "$(rabbitmq_log_tail)"
    fi
    if ((SECONDS - started >= WAIT)); then
      local status
      status="$(timeout 30 rabbitmq-diagnostics -q status 2>&1 | tail -n 20 || true)"
      die "RabbitMQ did not come up: $HOST:$RABBITMQ_PORT does not speak AMQP after ${WAIT}s" \
        "rabbitmq-diagnostics status:" "$status" "$(rabbitmq_log_tail)"
    fi
    sleep 1
  done
  say "RabbitMQ is up after $((SECONDS - started))s ($HOST:$RABBITMQ_PORT speaks AMQP)"
}

# --- PostgreSQL -------------------------------------------------------------------------------

# pg_isready exit codes: 0 accepting, 1 rejecting (starting up or shutting down), 2 no response.
pg_state() {
  local rc=0
  pg_isready -h "$HOST" -p "$PG_PORT" -t 5 -q || rc=$?
  echo "$rc"
}

# "<version> <name>" of the Debian cluster configured for PG_PORT (e.g. "15 main").
pg_cluster() {
  local cluster=""
  if have pg_lsclusters; then
    # Only the cluster configured for this port: starting another one would not help.
    cluster="$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }')"
  else
    local dir
    for dir in /etc/postgresql/*/main; do
      if [[ -d "$dir" ]]; then
        cluster="$(basename "$(dirname "$dir")") main"
        break
      fi
    done
  fi
  echo "$cluster"
}

ensure_postgres() {
  have pg_isready || die "PostgreSQL: pg_isready is not installed (install postgresql-client)"
  local state
  state="$(pg_state)"
  if [[ "$state" != 0 ]]; then
    if [[ "$state" == 1 ]]; then
      say "PostgreSQL on $HOST:$PG_PORT rejects connections (starting up?); waiting up to ${WAIT}s"
    else
      have pg_ctlcluster || die "PostgreSQL is not answering on $HOST:$PG_PORT and pg_ctlcluster is not installed"
      local cluster
      cluster="$(pg_cluster)"
      [[ -n "$cluster" ]] || die "PostgreSQL is not answering on $HOST:$PG_PORT and no cluster for port $PG_PORT is configured under /etc/postgresql (pg_lsclusters)"
      say "PostgreSQL is not answering on $HOST:$PG_PORT; starting cluster $cluster (pg_ctlcluster)"
      # shellcheck disable=SC2086 # "<version> <name>" are two arguments
      pg_ctlcluster --skip-systemctl-redirect $cluster start </dev/null ||
        say "pg_ctlcluster start failed (already starting?); waiting anyway"
    fi
    local started=$SECONDS
    until [[ "$(pg_state)" == 0 ]]; do
      if ((SECONDS - started >= WAIT)); then
        local log tail_text=""
        log="$(newest_log /var/log/postgresql)"
        if [[ -n "$log" && -r "$log" ]]; then tail_text="$(printf -- '--- last 20 lines of %s ---\n' "$log"; tail -n 20 "$log")"; fi
        die "PostgreSQL did not come up: $HOST:$PG_PORT is not accepting connections after ${WAIT}s" \
          "$(pg_isready -h "$HOST" -p "$PG_PORT" 2>&1 || true)" "$tail_text"
      fi
      sleep 1
    done
  fi
  # Accepting connections is not the whole story: the suites need the database and role.
  if have psql; then
    local out
    out="$(psql -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -w -Atqc 'select 1' 2>&1)" ||
      die "PostgreSQL is up on $HOST:$PG_PORT but database '$PG_DB' is not usable as '$PG_USER':" "$out"
  fi
  say "PostgreSQL is up ($HOST:$PG_PORT, database $PG_DB)"
}

# --- Tools the operator tests run: promtool (Debian's prometheus) and a headless Chromium -------

# ensure_tool BINARY PACKAGE: installs PACKAGE with apt-get when BINARY is missing, else fails.
ensure_tool() {
  if ! have "$1"; then
    have apt-get || die "$1 is missing and apt-get is not available: install the $2 package"
    say "$1 is missing; installing Debian's $2 (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"; } ||
      die "could not install $2 (needed for $1)"
    have "$1" || die "$2 is installed but $1 is still not on PATH"
  fi
  say "$1 is available ($(command -v "$1"))"
}

ensure_rabbitmq
ensure_postgres
ensure_tool promtool prometheus
ensure_tool chromium chromium

# --- Kafka test cluster (librdkafka's mock cluster) -------------------------------------------

# The Kafka suites run librdkafka's mock cluster through test/support/kafka-mock-cluster.c,
# built with gcc -lrdkafka (the tests start it, one per test file). Needs librdkafka-dev.
ensure_kafka_mock() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local src="$root/test/support/kafka-mock-cluster.c" bin="$root/node_modules/.cache/botqueue/kafka-mock-cluster"
  if [[ ! -f /usr/include/librdkafka/rdkafka_mock.h ]]; then
    say "librdkafka-dev is missing; installing it (apt-get) for the Kafka mock cluster"
    if have apt-get; then
      local sudo=""
      if ((EUID != 0)) && have sudo; then sudo="sudo"; fi
      $sudo apt-get install -y librdkafka-dev >/dev/null 2>&1 ||
        { $sudo apt-get update >/dev/null 2>&1 && $sudo apt-get install -y librdkafka-dev >/dev/null 2>&1; } ||
        die "could not install librdkafka-dev (apt-get install -y librdkafka-dev): the Kafka suites need it"
    else
      die "librdkafka-dev is not installed and apt-get is not available: install librdkafka (headers and library) for the Kafka suites"
    fi
  fi
  have gcc || die "gcc is not installed: the Kafka suites build test/support/kafka-mock-cluster.c with it"
  mkdir -p "$(dirname "$bin")"
  gcc -O2 -o "$bin" "$src" -lrdkafka || die "building the Kafka mock cluster failed: gcc -O2 -o $bin $src -lrdkafka"
  # It must start and print its bootstrap brokers.
  local first
  first="$(echo quit | timeout 10 "$bin" | head -n 1)" || true
  [[ "$first" == bootstraps\ * ]] || die "the Kafka mock cluster did not start (said: ${first:-nothing})"
  say "Kafka mock cluster builds and starts (${first#bootstraps })"
}

ensure_kafka_mock

# --- Power-loss shim ----------------------------------------------------------------------------

# Scenario p of the reliability suite (and test/reliability/netns-and-power.test.ts) preloads
# test/support/powerloss-shim.c into a SQLite publisher to drop every write not fsync'ed at a
# simulated power cut. Built with gcc (also rebuilt on first use when missing or stale).
ensure_powerloss_shim() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local src="$root/test/support/powerloss-shim.c" lib="$root/node_modules/.cache/botqueue/powerloss-shim.so"
  have gcc || die "gcc is not installed: the power-loss scenario builds test/support/powerloss-shim.c with it"
  mkdir -p "$(dirname "$lib")"
  gcc -O2 -shared -fPIC -o "$lib" "$src" -ldl -lpthread || die "building the power-loss shim failed: gcc -O2 -shared -fPIC -o $lib $src -ldl -lpthread"
  # It must load into a process without changing anything when its variables are unset.
  # (ld.so only warns about a library it cannot preload, and runs the program anyway.)
  local said
  said="$(LD_PRELOAD="$lib" true 2>&1)"
  [[ -z "$said" ]] || die "the power-loss shim does not load (LD_PRELOAD=$lib true said: $said)"
  say "power-loss shim builds and loads"
}

ensure_powerloss_shim

# tests/pg.sh - a private, throw-away Postgres for tests (source it).
#
#   . "$STOCKADE_ROOT/tests/pg.sh"
#   pg_available || { skip "postgres" "no postgres server binaries"; done_testing; exit 0; }
#   pg_start                      # exports PG_CONNINFO, PG_PORT, PG_DIR; stops itself at exit
#   psql "$PG_CONNINFO" -c 'select 1'
#   pg_restart                    # stop + start the same cluster (reconnect tests)
#   pg_stop                       # optional: the EXIT trap calls it too
#
# The cluster lives in a fresh temporary directory (initdb, trust auth on loopback only, fsync
# off), listens on a free TCP port on 127.0.0.1 and a unix socket inside that directory, and is
# removed when the script exits. Postgres refuses to run as root, so as root the server runs as
# the `postgres` user through runuser. If the caller sets its own EXIT trap, call pg_stop there.

PG_BINDIR=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
PG_DIR=${PG_DIR:-}
PG_PORT=${PG_PORT:-}
PG_CONNINFO=${PG_CONNINFO:-}

pg_available() {
  [ -n "$PG_BINDIR" ] && [ -x "$PG_BINDIR/initdb" ] && [ -x "$PG_BINDIR/pg_ctl" ]
}

_pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

_pg_free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

_pg_ctl_start() {
  _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR/sock -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=60" \
    start >/dev/null
}

# pg_start: initdb + start; exports PG_CONNINFO ("host=127.0.0.1 port=N user=postgres dbname=postgres").
pg_start() {
  pg_available || { echo "pg.sh: no postgres server binaries under /usr/lib/postgresql" >&2; return 1; }
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/stockade-pg.XXXXXX") || return 1
  mkdir -p "$PG_DIR/sock"
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$PG_DIR"
  trap pg_stop EXIT
  trap 'pg_stop; exit 130' INT TERM
  if ! _pg_as_owner "$PG_BINDIR/initdb" -D "$PG_DIR/data" -U postgres --auth=trust \
      --no-sync -E UTF8 --locale=C >"$PG_DIR/initdb.log" 2>&1; then
    echo "pg.sh: initdb failed:" >&2; cat "$PG_DIR/initdb.log" >&2; return 1
  fi
  local tries
  for tries in 1 2 3; do
    PG_PORT=$(_pg_free_port)
    if _pg_ctl_start; then
      break
    fi
    [ "$tries" -eq 3 ] && { echo "pg.sh: postgres did not start:" >&2; tail -n 20 "$PG_DIR/server.log" >&2; return 1; }
  done
  PG_CONNINFO="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres connect_timeout=5"
  export PG_DIR PG_PORT PG_CONNINFO
}

# pg_restart [SECONDS]: stop the server (fast shutdown: clients are disconnected), optionally
# stay down for SECONDS, then start it again on the same port.
pg_restart() {
  _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null || return 1
  [ -n "${1:-}" ] && sleep "$1"
  _pg_ctl_start
}

pg_stop() {
  [ -n "$PG_DIR" ] || return 0
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1
  fi
  rm -rf "$PG_DIR"
  PG_DIR=
}

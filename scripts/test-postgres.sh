#!/usr/bin/env bash
# A private PostgreSQL cluster on loopback, for the PostgreSQL broker tests.
#
#   scripts/test-postgres.sh start DIR [PORT]   initdb into DIR, start, print the URL
#   scripts/test-postgres.sh stop DIR           stop it (DIR stays; delete it yourself)
#
# Then: SCRIP_TEST_POSTGRES_URL=<printed URL> cargo test --workspace
# The cluster trusts local connections and listens on 127.0.0.1 only.
set -euo pipefail

pg_bin() {
  if command -v pg_ctl >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/pg_ctl" ]; then echo "$dir"; return; fi
  done
  return 1
}

# PostgreSQL refuses to run as root: as root, run it as the postgres user
# (or nobody), which then owns DIR.
as_owner() {
  if [ "$(id -u)" -ne 0 ]; then "$@"; return; fi
  local user=postgres
  getent passwd postgres >/dev/null || user=nobody
  mkdir -p "$dir" && chown "$user" "$dir" && chmod 700 "$dir"
  runuser -u "$user" -- "$@"
}

command=${1:-}
dir=${2:-}
[ -n "$command" ] && [ -n "$dir" ] || { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }
bin=$(pg_bin) || { echo "PostgreSQL not found (no pg_ctl on PATH or in /usr/lib/postgresql/*/bin)" >&2; exit 3; }

case "$command" in
  start)
    port=${3:-54329}
    if [ ! -f "$dir/PG_VERSION" ]; then
      log=$(mktemp)
      as_owner "$bin/initdb" --pgdata="$dir" --auth=trust --username=scrip --encoding=UTF8 --no-instructions >"$log" 2>&1 \
        || { cat "$log" >&2; rm -f "$log"; exit 1; }
      rm -f "$log"
    fi
    # fsync stays on: the tests and benchmarks measure durable commits.
    as_owner "$bin/pg_ctl" --pgdata="$dir" --log="$dir/server.log" --wait --silent \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c max_connections=200" start
    echo "postgres://scrip@127.0.0.1:$port/postgres"
    ;;
  stop)
    as_owner "$bin/pg_ctl" --pgdata="$dir" --wait --silent --mode=fast stop
    ;;
  *) echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2 ;;
esac

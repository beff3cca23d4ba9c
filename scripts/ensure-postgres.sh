#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 for the tests: uses the running one,
# starts an installed but stopped cluster, or installs Debian's package. A server installed here
# gets trust authentication for the postgres user on loopback only: a throw-away test server.
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if command -v pg_isready >/dev/null && ready; then exit 0; fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then echo "ensure-postgres: no PostgreSQL at 127.0.0.1:5432 and not root to install it" >&2; exit 1; fi
  echo "ensure-postgres: installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  for hba in /etc/postgresql/*/main/pg_hba.conf; do
    grep -q "blocktrust-exporter tests" "$hba" || sed -i '1i # blocktrust-exporter tests: trust on loopback\nhost all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  done
fi
version=$(ls /etc/postgresql | sort -V | tail -n1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start || true
for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
echo "ensure-postgres: PostgreSQL did not come up at 127.0.0.1:5432" >&2
exit 1

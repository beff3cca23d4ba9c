#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use (promtool, amtool, prometheus,
# alertmanager, blackbox_exporter, docker-compose, and chromium for the status page's browser
# test, which Playwright drives as /usr/bin/chromium), only those that are missing.
set -euo pipefail
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v prometheus-blackbox-exporter >/dev/null || need+=(prometheus-blackbox-exporter)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v npm >/dev/null || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium fonts-dejavu-core)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-system-deps: missing ${need[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "ensure-system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends keeps the packages' services out; the tests start their own instances.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged daemons on install; the tests run their own on other ports.
for svc in prometheus prometheus-alertmanager prometheus-blackbox-exporter prometheus-node-exporter; do
  if command -v service >/dev/null && [ -e "/etc/init.d/$svc" ]; then service "$svc" stop >/dev/null 2>&1 || true; fi
done

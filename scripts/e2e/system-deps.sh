#!/usr/bin/env bash
# What `make e2e` needs from Debian: chromium for the browser test (Playwright drives it; its own
# browser download is not used), and the PostgreSQL and Redis servers the deployment runs on.
set -euo pipefail
missing=""
for need in chromium:chromium pg_ctlcluster:postgresql redis-server:redis-server; do
  command -v "${need%%:*}" >/dev/null 2>&1 || missing="$missing ${need#*:}"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "error: make e2e needs the Debian packages:$missing (e.g. 'sudo apt-get install$missing')" >&2
  exit 1
fi
echo "installing Debian packages:$missing"
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null

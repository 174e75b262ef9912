#!/usr/bin/env bash
# What `make e2e` needs from Debian: chromium for the browser test (Playwright drives it; its own
# browser download is not used), and the PostgreSQL and Redis servers the deployment runs on.
set -euo pipefail
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v pg_ctlcluster >/dev/null 2>&1 || missing="$missing postgresql"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "error: make e2e needs the system packages:$missing" >&2
  echo "       install them (e.g. 'sudo apt-get install$missing') and run make e2e again." >&2
  exit 1
fi

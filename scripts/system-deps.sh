#!/usr/bin/env bash
# Debian packages that mysqlclient (needed by the MySQL provider) builds against: it has no Linux wheel.
set -euo pipefail
if command -v pkg-config >/dev/null 2>&1 && { pkg-config --exists mysqlclient || pkg-config --exists libmariadb; }; then
  exit 0
fi
missing="pkg-config default-libmysqlclient-dev"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: $missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "error: mysqlclient needs the system packages: $missing" >&2
  echo "       install them (e.g. 'sudo apt-get install $missing') and run make again." >&2
  exit 1
fi

#!/usr/bin/env bash
# The tests need a real MariaDB/MySQL server; start the local one if it is down. Never skip.
set -euo pipefail
host=${TEST_MYSQL_HOST:-127.0.0.1}
port=${TEST_MYSQL_PORT:-3306}
user=${TEST_MYSQL_USER:-root}
database=${TEST_MYSQL_DATABASE:-test}
admin() { mysqladmin --host="$host" --port="$port" --user="$user" --password="${TEST_MYSQL_PASSWORD:-}" "$@"; }
if ! admin --silent ping >/dev/null 2>&1; then
  if [ "$host" = "127.0.0.1" ] && [ -x /usr/sbin/mariadbd ]; then
    echo "MariaDB is down: starting /usr/sbin/mariadbd"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    for _ in $(seq 1 60); do
      admin --silent ping >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
fi
if ! admin --silent ping >/dev/null 2>&1; then
  echo "error: no MariaDB/MySQL server at $host:$port (user $user); the database tests cannot run." >&2
  exit 1
fi
mysql --host="$host" --port="$port" --user="$user" --password="${TEST_MYSQL_PASSWORD:-}" \
  -e "CREATE DATABASE IF NOT EXISTS \`$database\`"

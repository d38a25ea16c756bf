#!/bin/bash
# First start on an empty data directory: create the system tables, then the
# database and user named by MARIADB_DATABASE / MARIADB_USER /
# MARIADB_PASSWORD, on a private server that listens on no network (so the
# healthcheck cannot pass before the server is ready). Then run the real one.
set -euo pipefail

datadir=/var/lib/mysql
socket=/run/mysqld/init.sock

sql_quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/\\\\/\\\\\\\\/g; s/'/''/g")"; }
random_password() { head -c 24 /dev/urandom | base64 | tr -d '/+=\n'; }

initialise() {
    local root_password="${MARIADB_ROOT_PASSWORD:-}"
    if [ -z "$root_password" ]; then
        if [ "${MARIADB_RANDOM_ROOT_PASSWORD:-}" = "" ]; then
            echo "set MARIADB_ROOT_PASSWORD or MARIADB_RANDOM_ROOT_PASSWORD" >&2
            exit 1
        fi
        root_password="$(random_password)"
        echo "generated root password: $root_password"
    fi
    local health_password
    health_password="$(random_password)"

    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld "$datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
        --auth-root-authentication-method=socket >/dev/null
    mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" &
    local pid=$!
    for _ in $(seq 1 300); do
        mariadb-admin --socket="$socket" ping >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || { echo "mariadbd died during initialisation" >&2; exit 1; }
        sleep 0.2
    done

    {
        echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD($(sql_quote "$root_password"));"
        echo "CREATE USER 'healthcheck'@'127.0.0.1' IDENTIFIED BY $(sql_quote "$health_password");"
        echo "CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY $(sql_quote "$health_password");"
        if [ -n "${MARIADB_DATABASE:-}" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`;"
        fi
        if [ -n "${MARIADB_USER:-}" ]; then
            echo "CREATE USER $(sql_quote "$MARIADB_USER")@'%' IDENTIFIED BY $(sql_quote "${MARIADB_PASSWORD:-}");"
            if [ -n "${MARIADB_DATABASE:-}" ]; then
                echo "GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO $(sql_quote "$MARIADB_USER")@'%';"
            fi
        fi
    } | mariadb --socket="$socket" -uroot

    printf '[client]\nuser=healthcheck\npassword=%s\n' "$health_password" >"$datadir/.my-healthcheck.cnf"
    chown mysql:mysql "$datadir/.my-healthcheck.cnf"
    chmod 600 "$datadir/.my-healthcheck.cnf"

    mariadb-admin --socket="$socket" -uroot shutdown
    wait "$pid"
}

if [ "${1:-}" = mariadbd ] && [ ! -d "$datadir/mysql" ]; then
    initialise
fi
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
exec "$@"

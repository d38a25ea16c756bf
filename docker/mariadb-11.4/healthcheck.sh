#!/bin/sh
# The two checks of the official image's healthcheck.sh that compose.yaml
# uses: --connect (a client gets in over TCP) and --innodb_initialized
# (InnoDB is up). Exits non-zero on the first that fails.
set -e
[ $# -gt 0 ] || set -- --connect
for check in "$@"; do
    case "$check" in
        --connect)
            sql="SELECT 1" ;;
        --innodb_initialized)
            sql="SELECT 1 FROM information_schema.ENGINES WHERE ENGINE = 'InnoDB' AND SUPPORT IN ('YES', 'DEFAULT')" ;;
        *)
            echo "healthcheck.sh: unknown check $check" >&2
            exit 2 ;;
    esac
    answer=$(mariadb --defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf \
        --protocol=tcp --host=127.0.0.1 --skip-column-names --batch -e "$sql")
    [ "$answer" = 1 ] || { echo "healthcheck.sh: $check failed" >&2; exit 1; }
done

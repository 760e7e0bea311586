#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 with a database
# named "test" that the postgres role can use without a password.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

ready() { pg_isready -q -h "$HOST" -p "$PORT"; }

if ! ready; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    version="$(ls /etc/postgresql | sort -n | tail -1)"
    echo "starting PostgreSQL $version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do ready && break; sleep 1; done
fi
ready || { echo "PostgreSQL does not answer on $HOST:$PORT" >&2; exit 1; }

if ! psql -h "$HOST" -p "$PORT" -U postgres -d test -qtAc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian cluster asks for passwords on TCP; the suite needs trust
    # on loopback and a database named test.
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    hba="$(ls /etc/postgresql/*/main/pg_hba.conf | tail -1)"
    if ! grep -q "fetlock-test" "$hba"; then
        $SUDO sed -i "1i host all all 127.0.0.1/32 trust # fetlock-test" "$hba"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -n | tail -1)" main reload
    fi
    psql -h "$HOST" -p "$PORT" -U postgres -d postgres -qtAc \
        "select 1 from pg_database where datname='test'" | grep -q 1 \
        || psql -h "$HOST" -p "$PORT" -U postgres -d postgres -qc "create database test"
fi

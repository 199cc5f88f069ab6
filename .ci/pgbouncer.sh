#!/usr/bin/env bash
# PgBouncer 1.24.1 for the test of replicas behind a transaction-mode pooler
# (exchange/tests/replicas.rs). Debian 12 ships 1.18, older than the 1.21 that first kept
# prepared statements apart in transaction mode; Debian 13's source package (the upstream
# release tarball, sha256-checked) is built here against Debian 12's libraries, once, into
# target/ci-tools/pgbouncer. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="$PWD/target/ci-tools/pgbouncer"
binary="$prefix/bin/pgbouncer"
if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi

version=1.24.1
sha256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
tarball="pgbouncer_${version}.orig.tar.gz"
{
    if ! pkg-config --exists libevent || ! pkg-config --exists openssl; then
        apt-get install -y -q libevent-dev pkg-config libssl-dev || {
            apt-get update -q && apt-get install -y -q libevent-dev pkg-config libssl-dev
        }
    fi
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    curl -fsS --retry 3 -o "$work/$tarball" "http://deb.debian.org/debian/pool/main/p/pgbouncer/$tarball"
    echo "$sha256  $work/$tarball" | sha256sum -c --quiet -
    tar -xzf "$work/$tarball" -C "$work"
    cd "$work/pgbouncer-$version"
    ./configure --quiet --prefix="$prefix" --without-cares --without-pam --without-systemd
    make --quiet -j"$(nproc)"
    make --quiet install
} >&2
echo "$binary"

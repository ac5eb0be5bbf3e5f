#!/bin/sh
# The platform's PostgreSQL (RDS in the team's document) as a local service:
#
#     sh db/postgres.sh PORT DATA_DIR
#
# Finds PostgreSQL's server programs, creates the cluster in DATA_DIR on the
# first start (initdb, the `aicode` database and db/schema.sql), then execs
# `postgres` on 127.0.0.1:PORT in the foreground: hangar supervises it, so it
# must not daemonise (no pg_ctl), and the instance's pid is PostgreSQL's own.
# hangar stops it with SIGINT (PostgreSQL's fast shutdown, see hangar.yml).
set -eu

usage="usage: sh db/postgres.sh PORT DATA_DIR"
port=${1:?$usage}
data=${2:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
fail() {
    echo "db/postgres.sh: $*" >&2
    exit 1
}

# The server programs: on PATH (a source build, Homebrew, the official image),
# else where pg_config says, else Debian's and Ubuntu's
# /usr/lib/postgresql/VERSION/bin (the postgresql package leaves them off PATH),
# the newest version first.
bindir=
if command -v postgres >/dev/null 2>&1; then
    bindir=$(dirname "$(command -v postgres)")
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    bindir=$(pg_config --bindir 2>/dev/null || true)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ] || [ ! -x "$bindir/initdb" ]; then
    bindir=
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5nr); do
        if [ -x "$d/postgres" ] && [ -x "$d/initdb" ]; then
            bindir=$d
            break
        fi
    done
fi
[ -n "$bindir" ] || fail "PostgreSQL is not installed (no postgres and initdb on PATH, \
from pg_config --bindir or in /usr/lib/postgresql/*/bin). Install it and start again: \
apt-get install postgresql (Debian, Ubuntu), dnf install postgresql-server (Fedora), \
brew install postgresql@15 (macOS)."
# hangar.yml's health check and backup commands run PostgreSQL's client programs.
for tool in pg_isready psql pg_dump; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not on PATH (hangar.yml's \
health check and backup of db run it): install PostgreSQL's client programs \
(apt-get install postgresql-client) or add $bindir to PATH."
done

# PostgreSQL refuses to run as root. As root (a container, a CI machine) the
# cluster belongs to the `postgres` user, as Debian's package sets it up, and
# its programs run as that user through setpriv, which execs the program
# itself (runuser or su would stay in between as the instance's process).
as=
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || fail "running as root, PostgreSQL needs a user to run \
as: create the \`postgres\` user (the postgresql package does) or run hangar as another user."
    as="setpriv --reuid=postgres --regid=postgres --init-groups --"
fi

if [ ! -f "$data/PG_VERSION" ]; then
    # A new cluster, made beside DATA_DIR and renamed into place once its
    # database and tables exist: an interrupted first start leaves no
    # half-made cluster to start from next time.
    [ ! -e "$data" ] || rmdir "$data" 2>/dev/null || fail "$data exists and is not a \
PostgreSQL cluster: move it away (a cluster is created there on the first start)."
    new="$data.initdb"
    rm -rf "$new"
    mkdir -p "$new"
    [ -z "$as" ] || chown postgres: "$new"
    $as test -w "$new" || fail "the postgres user cannot reach $new: let it through the \
folders above it (chmod o+x on each) or keep the project elsewhere."
    # Locale C: the same sorting everywhere, and no locale to install in a
    # minimal container. Trust for loopback connections of this machine (see
    # the README: RDS in production takes a password). --no-sync: initdb's
    # fsync of each of the thousand files it writes takes seconds on a busy
    # disk, and this is a local stand-in; a machine that loses power during
    # this first start may need DATA_DIR removed.
    $as "$bindir/initdb" -D "$new" --username=aicode --auth=trust --encoding=UTF8 --no-sync \
        --locale=C >"$new.log" 2>&1 || fail "initdb failed: $(cat "$new.log")"
    rm -f "$new.log"
    # Single-user mode: the schema goes in before the server listens, so
    # nothing ever sees the database without its tables.
    single() {
        out=$($as "$bindir/postgres" --single -D "$new" -j "$1" 2>&1) ||
            fail "creating the database failed: $out"
        case $out in *ERROR:*) fail "creating the database failed: $out" ;; esac
    }
    printf 'CREATE DATABASE aicode;\n\n' | single postgres
    { cat "$here/schema.sql"; printf '\n\n'; } | single aicode
    mv "$new" "$data"
fi

cd "$data"
# Loopback only, no unix socket (its path would be this project's and could
# exceed the 107 bytes a socket path may have).
exec $as "$bindir/postgres" -D "$data" -p "$port" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories=

#!/bin/bash
# Writes a ready nginx prefix for a local nginx in front of Mailgate.
# usage: render-conf.sh PREFIX PORT SOCKET [TOKEN_RATE] [WORKERS] [ACCESS_LOG] [NOOP_SOCKET]
# (NOOP_SOCKET: the benchmark's no-op FastCGI responder, /fastcgi-baseline)
# then:  nginx -p PREFIX -c PREFIX/nginx.conf
set -euo pipefail
prefix=$1 port=$2 socket=$3 rate=${4:-50r/s} workers=${5:-1} access_log=${6:-} noop_socket=${7:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$prefix"/tmp/{client_body,proxy,fastcgi,uwsgi,scgi}
prefix=$(cd "$prefix" && pwd)
[ -n "$access_log" ] || access_log="$prefix/access.log"
[ -n "$noop_socket" ] || noop_socket="$prefix/noop.sock"
# As root, nginx's workers would drop to `nobody` and lose access to the
# 0660 socket; keep them as the invoking user.
user_line=""
[ "$(id -u)" = 0 ] && user_line="user root root;"
cp /etc/nginx/fastcgi_params "$prefix/fastcgi_params"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@SOCKET@|$socket|g" \
    -e "s|@TOKEN_RATE@|$rate|g" -e "s|@WORKERS@|$workers|g" -e "s|@ROOT@|$root|g" \
    -e "s|@USER_LINE@|$user_line|g" -e "s|@ACCESS_LOG@|$access_log|g" -e "s|@NOOP_SOCKET@|$noop_socket|g" \
    "$root/nginx/local/nginx.conf.in" > "$prefix/nginx.conf"

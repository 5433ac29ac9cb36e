#!/bin/bash
# Instruction counts and CPU per send, without nginx or wrk: measures that a
# busy machine does not disturb (make bench's wall-clock figures are then
# noise). Starts smtp-sink (and stunnel4 in front of it with PROFILE_TLS=1),
# a Mailgate data dir and `mailgate serve` under the chosen tool, drives
# PROFILE_WARMUP sends then PROFILE_SENDS measured ones straight into the
# FastCGI socket (Benchmarks/fcgi-drive.py, PROFILE_CONCURRENCY at once),
# and prints per-send figures.
#
#   Benchmarks/profile.sh callgrind   instructions per send (valgrind, counters
#                                     zeroed after the warm-up); keeps
#                                     callgrind.out in $PROFILE_OUT (default
#                                     /tmp/mailgate-profile) for callgrind_annotate
#   Benchmarks/profile.sh perf-stat   task-clock and context switches per send
#   Benchmarks/profile.sh perf-record perf record -g of the measured sends
#   Benchmarks/profile.sh strace      system calls per send by name (strace -c),
#                                     and every call with its thread and time
#                                     in $PROFILE_OUT/strace.txt
#
# Environment: MAILGATE_BIN (default .build/release/mailgate), PROFILE_SENDS
# (default 2000; callgrind 500), PROFILE_WARMUP (default 200),
# PROFILE_CONCURRENCY (default 8), PROFILE_TLS=1, MAILGATE_SERVE_ARGS,
# PROFILE_SINK: smtp-sink (the default), or aiosmtpd / aiosmtpd-chunking: the
# tests' aiosmtpd server (Tests/MailgateTesting/Python/smtp_server.py) with
# PIPELINING, and with CHUNKING/BDAT for the second, which smtp-sink (Postfix
# 3.7) cannot offer. The two differ only in CHUNKING: compare those two with
# each other, not with smtp-sink (aiosmtpd answers much more slowly).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:?usage: profile.sh callgrind|perf-stat|perf-record|strace}
bin=${MAILGATE_BIN:-$root/.build/release/mailgate}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
sends=${PROFILE_SENDS:-$([ "$mode" = callgrind ] && echo 500 || echo 2000)}
warmup=${PROFILE_WARMUP:-200}
concurrency=${PROFILE_CONCURRENCY:-8}
out=${PROFILE_OUT:-/tmp/mailgate-profile}
drive=$root/Benchmarks/fcgi-drive.py
mkdir -p "$out"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mailgate-profile.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    cp "$tmp/serve.log" "$out/serve.log" 2>/dev/null || true   # per-request durations, for latency questions
    rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), timeout=0.2).close()" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2; exit 1
}

sink=${PROFILE_SINK:-smtp-sink}
case $sink in
    smtp-sink)
        sink_port=$(free_port)
        /usr/sbin/smtp-sink -u root -a -c "127.0.0.1:$sink_port" 1024 >"$tmp/sink.count" 2>"$tmp/sink.err" &
        pids+=($!)
        ;;
    aiosmtpd|aiosmtpd-chunking)
        mkdir "$tmp/messages"
        # The server exits when its stdin closes: a FIFO this script holds
        # open (fd 9) until it exits.
        mkfifo "$tmp/sink.in"
        /usr/bin/python3 "$root/Tests/MailgateTesting/Python/smtp_server.py" --dir "$tmp/messages" --pipelining \
            $([ "$sink" = aiosmtpd-chunking ] && echo --chunking) <"$tmp/sink.in" >"$tmp/sink.port" 2>"$tmp/sink.err" &
        pids+=($!)
        exec 9>"$tmp/sink.in"
        for _ in $(seq 100); do grep -q '^PORT' "$tmp/sink.port" 2>/dev/null && break; sleep 0.05; done
        sink_port=$(awk '/^PORT/ { print $2 }' "$tmp/sink.port")
        [ -n "$sink_port" ] || { cat "$tmp/sink.err" >&2; exit 1; }
        ;;
    *) echo "unknown PROFILE_SINK $sink" >&2; exit 2 ;;
esac
wait_port "$sink_port"
port=$sink_port security=none tls_args=()
if [ "${PROFILE_TLS:-0}" = 1 ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
    port=$(free_port)
    printf 'foreground = yes\npid =\n[smtps]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\ncert = %s\nkey = %s\n' \
        "$port" "$sink_port" "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/stunnel.conf"
    stunnel4 "$tmp/stunnel.conf" >"$tmp/stunnel.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
    security=tls tls_args=(--ca-file "$tmp/cert.pem")
fi

data=$tmp/data
"$bin" init --data-dir "$data" >/dev/null
openssl rand -hex 16 | "$bin" user add bench --data-dir "$data" >/dev/null
"$bin" integration set bench --data-dir "$data" --host 127.0.0.1 --port "$port" --security "$security" \
    --from bench@localhost --from-name "Mailgate bench" >/dev/null
token=$("$bin" token issue bench --data-dir "$data" --ttl 1d)
socket=$tmp/mailgate.sock
serve=("$bin" serve --data-dir "$data" --socket "$socket" --max-in-flight-per-user 1024 "${tls_args[@]}" ${MAILGATE_SERVE_ARGS:-})
case $mode in
    callgrind)
        rm -f "$out"/callgrind.out*
        valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" "${serve[@]}" 2>"$tmp/serve.log" &
        ;;
    perf-stat|perf-record|strace) "${serve[@]}" 2>"$tmp/serve.log" & ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
serve_pid=$!; pids+=("$serve_pid")
for _ in $(seq 600); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || { cat "$tmp/serve.log" >&2; exit 1; }
python3 "$drive" "$socket" "$warmup" "$concurrency" "$token" >/dev/null || { echo "warm-up failed:" >&2; tail -n 3 "$tmp/serve.log" >&2; exit 1; }

case $mode in
    callgrind)
        callgrind_control -z "$serve_pid" >/dev/null
        python3 "$drive" "$socket" "$sends" "$concurrency" "$token"
        callgrind_control -d "$serve_pid" >/dev/null
        dump=$(ls -t "$out"/callgrind.out.* | head -n 1)
        total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
        echo "callgrind: $total instructions for $sends sends = $((total / sends)) per send (all threads); $dump"
        ;;
    perf-stat)
        # System calls too, where the kernel lets perf count the tracepoint.
        events=task-clock,context-switches,cpu-migrations
        perf stat -e raw_syscalls:sys_enter -- true >/dev/null 2>&1 && events=$events,raw_syscalls:sys_enter
        perf stat -e "$events" -p "$serve_pid" -o "$tmp/stat" &
        stat_pid=$!
        sleep 0.3
        python3 "$drive" "$socket" "$sends" "$concurrency" "$token"
        kill -INT "$stat_pid"; wait "$stat_pid" || true
        awk -v n="$sends" '/task-clock/ { gsub(",", "", $1); printf "task-clock %.1f us per send\n", $1 * 1000 / n }
            /context-switches/ { gsub(",", "", $1); printf "context switches %.2f per send\n", $1 / n }
            /raw_syscalls:sys_enter/ { gsub(",", "", $1); printf "system calls %.1f per send\n", $1 / n }' "$tmp/stat"
        ;;
    perf-record)
        perf record -g -o "$out/perf.data" -p "$serve_pid" 2>/dev/null &
        rec_pid=$!
        sleep 0.3
        python3 "$drive" "$socket" "$sends" "$concurrency" "$token"
        kill -INT "$rec_pid"; wait "$rec_pid" || true
        echo "perf data: $out/perf.data (perf report -i $out/perf.data --no-children)"
        ;;
    strace)
        strace -f -tt -o "$out/strace.txt" -p "$serve_pid" 2>/dev/null &
        trace_pid=$!
        sleep 0.5
        python3 "$drive" "$socket" "$sends" "$concurrency" "$token"
        kill -INT "$trace_pid"; wait "$trace_pid" || true
        # Per send, by name; the calls of the idle threads (a timed wait
        # or two a second) are in too, and negligible over a few thousand sends.
        awk -v n="$sends" '{ name = $3; sub(/\(.*/, "", name); if (name ~ /^[a-z_0-9]+$/) count[name]++; if ($0 ~ / = -1 EAGAIN/) again[name]++ }
            END { for (k in count) { total += count[k]; printf "%-18s %6.2f per send%s\n", k, count[k] / n, (again[k] ? sprintf(" (%.2f EAGAIN)", again[k] / n) : "") }
                  printf "%-18s %6.2f per send\n", "all", total / n }' "$out/strace.txt" | sort -k2 -nr
        echo "every call: $out/strace.txt"
        ;;
esac
# SMTP sessions the sink saw over the whole run (warm-up included): with
# pooled connections a handful, whatever the number of sends; over TLS each
# is one handshake.
if [ "$sink" = smtp-sink ]; then
    sessions=$(tail -c 512 "$tmp/sink.count" | tr '\r' '\n' | grep -o 'sess=[0-9]*' | tail -n 1 || true)
    echo "smtp-sink: ${sessions:-sess=0} SMTP sessions for $((warmup + sends)) sends"
else
    # Each stored message's envelope says how it came (BDAT or DATA) and
    # on which connection (the client's port).
    python3 - "$tmp/messages" "$sink" <<'PY'
import glob, json, sys
envelopes = [json.load(open(f)) for f in glob.glob(sys.argv[1] + "/*.json")]
print("%s: %d messages (%d by BDAT) over %d SMTP sessions" % (
    sys.argv[2], len(envelopes), sum(e.get("bdat", False) for e in envelopes),
    len({e["peer_port"] for e in envelopes})))
PY
fi
if [ "${PROFILE_TLS:-0}" = 1 ]; then
    echo "stunnel: $(grep -c 'accepted connection' "$tmp/stunnel.log" || true) TLS connections (handshakes) for $((warmup + sends)) sends"
fi

#!/bin/bash
# `make run`: nginx on 127.0.0.1:${PORT:-8080} in front of Mailgate, a demo
# user, and an SMTP server: the local capture server (prints each message)
# unless SMTP_URL points the demo user at a real one:
#   SMTP_URL=smtp://user:pass@mail.example.com:587/?from=me@example.com   (STARTTLS, required)
#   SMTP_URL=smtps://user:pass@mail.example.com:465/?from=me@example.com  (implicit TLS)
#   SMTP_URL=smtp+plain://127.0.0.1:25/?from=me@example.com               (no TLS)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
var=${VAR:-$root/var}
port=${PORT:-8080}
smtp_port=${SMTP_CAPTURE_PORT:-2525}
bin=${MAILGATE_BIN:-$root/.build/release/mailgate}
data=$var/data
mkdir -p "$var"

"$bin" init --data-dir "$data" >/dev/null

password_file=$var/demo-password
if ! "$bin" user list --data-dir "$data" | grep -q '^demo\b'; then
    (umask 077; openssl rand -base64 24 | tr -d '/+=' | head -c 20 > "$password_file")
    "$bin" user add demo --data-dir "$data" < "$password_file" >/dev/null
fi
password=$(cat "$password_file")

pids=()
cleanup() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "stopped."
}
trap cleanup INT TERM EXIT

if [ -n "${SMTP_URL:-}" ]; then
    eval "$(/usr/bin/python3 - "$SMTP_URL" <<'PY'
import shlex, sys, urllib.parse as u
url = u.urlsplit(sys.argv[1])
security = {"smtp": "starttls", "smtps": "tls", "smtp+plain": "none"}.get(url.scheme)
if security is None:
    sys.exit("SMTP_URL scheme must be smtp (STARTTLS), smtps (TLS) or smtp+plain")
query = dict(u.parse_qsl(url.query))
port = url.port or {"starttls": 587, "tls": 465, "none": 25}[security]
frm = query.get("from") or (u.unquote(url.username) if url.username and "@" in u.unquote(url.username) else "demo@localhost")
for k, v in [("host", url.hostname or ""), ("port", str(port)), ("security", security),
             ("login", u.unquote(url.username or "")), ("secret", u.unquote(url.password or "")), ("from", frm)]:
    print("smtp_%s=%s" % (k, shlex.quote(v)))
PY
)"
    args=(integration set demo --data-dir "$data" --host "$smtp_host" --port "$smtp_port" --security "$smtp_security" --from "$smtp_from" --from-name "Mailgate demo")
    if [ -n "$smtp_login" ]; then
        printf '%s\n' "$smtp_secret" | "$bin" "${args[@]}" --username "$smtp_login" >/dev/null
    else
        "$bin" "${args[@]}" >/dev/null
    fi
    echo "SMTP: demo user sends through $smtp_security://$smtp_host:$smtp_port"
else
    "$bin" integration set demo --data-dir "$data" --host 127.0.0.1 --port "$smtp_port" --security none \
        --from demo@localhost --from-name "Mailgate demo" >/dev/null
    /usr/bin/python3 "$root/nginx/local/capture_smtp.py" --port "$smtp_port" --print --spool "$var/captured" &
    pids+=($!)
    echo "SMTP: local capture server on 127.0.0.1:$smtp_port prints every message below (and keeps it in $var/captured)"
fi

"$root/nginx/local/render-conf.sh" "$var/nginx" "$port" "$var/mailgate.sock" 10r/s
"$bin" serve --data-dir "$data" --socket "$var/mailgate.sock" &
pids+=($!)
for _ in $(seq 100); do [ -S "$var/mailgate.sock" ] && break; sleep 0.05; done
nginx -p "$var/nginx" -c "$var/nginx/nginx.conf" &
pids+=($!)
sleep 0.3

cat <<MSG

Mailgate is running at http://127.0.0.1:$port (Ctrl-C stops everything).
Demo user: demo   password: $password

1) Get a token:
   TOKEN=\$(curl -s http://127.0.0.1:$port/token -d username=demo -d 'password=$password' | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

2) Send an email:
   curl -s http://127.0.0.1:$port/smtp/send-email -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
        -d '{"to": "someone@example.com", "subject": "Hello from Mailgate", "message": "It works."}'

MSG
wait -n "${pids[@]}"

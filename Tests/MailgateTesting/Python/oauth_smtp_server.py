#!/usr/bin/python3
"""Test SMTP server with AUTH XOAUTH2 and OAUTHBEARER (Debian's python3-aiosmtpd).

Listens on 127.0.0.1 on an ephemeral port with STARTTLS (--cert/--key),
required before AUTH; prints "PORT <n>" and "CONTROL <n>" once it listens
and exits when stdin closes (as smtp_server.py). Messages are accepted only
from authenticated sessions and stored in --dir as <n>.json (envelope) and
<n>.eml (raw DATA), the format smtp_server.py writes, with "auth_mailbox"
added to the JSON.

Tokens: only access tokens oauth_provider.py signed with the same
--token-secret ("ya29.<expiry>.<random>.<hmac>"), not expired, with
user= (XOAUTH2) or a= (OAUTHBEARER) one of the --mailbox values.

  XOAUTH2      base64("user=" MAILBOX "\\x01auth=Bearer " TOKEN "\\x01\\x01"), as
               the initial response or after an empty 334. A bad token:
               334 base64({"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}),
               then after the client's empty line 535 5.7.8 Username and Password not accepted.
  OAUTHBEARER  RFC 7628: "n,a=MAILBOX,\\x01host=...\\x01port=...\\x01auth=Bearer TOKEN\\x01\\x01";
               a bad token gets the same dance with {"status":"invalid_token",...}.
  --only-oauthbearer offers OAUTHBEARER alone.

Control (plain HTTP on the CONTROL port):
  POST /refuse?count=N   refuse the next N otherwise valid tokens
  GET  /counters         {"auth_ok": n, "auth_failed": n, "messages": n}
"""
import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
from control_server import JSONControlHandler, start_control_server

from aiosmtpd.smtp import SMTP, AuthResult, MISSING


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.refuse_next = 0
        self.counters = {"auth_ok": 0, "auth_failed": 0, "messages": 0}


def token_valid(token, secret):
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "ya29":
        return False
    expiry, nonce, mac = parts[1], parts[2], parts[3]
    expected = hmac.new(secret, ("%s.%s" % (expiry, nonce)).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac):
        return False
    try:
        return int(expiry) > time.time()
    except ValueError:
        return False


class Handler:
    def __init__(self, directory, secret, mailboxes, state):
        self.directory = directory
        self.secret = secret
        self.mailboxes = mailboxes
        self.state = state

    def check(self, mailbox, token):
        ok = mailbox in self.mailboxes and token_valid(token, self.secret)
        with self.state.lock:
            if ok and self.state.refuse_next > 0:
                self.state.refuse_next -= 1
                ok = False
            self.state.counters["auth_ok" if ok else "auth_failed"] += 1
        return ok

    async def initial(self, server, args):
        if len(args) == 2:
            if args[1] == "=":
                return b""
            try:
                return base64.b64decode(args[1], validate=True)
            except ValueError:
                return None
        answer = await server.challenge_auth("")
        return None if answer is MISSING else answer

    async def refuse(self, server, error):
        # The error challenge; the client answers with an empty line (or
        # anything: it is read and ignored), then the final 535.
        await server.challenge_auth(json.dumps(error).encode())
        await server.push("535 5.7.8 Username and Password not accepted")
        return AuthResult(success=False, handled=True)

    async def auth_XOAUTH2(self, server, args):
        blob = await self.initial(server, args)
        if blob is None:
            await server.push("501 5.5.2 Cannot decode the response")
            return AuthResult(success=False, handled=True)
        fields = blob.split(b"\x01")
        mailbox = token = None
        if len(fields) == 4 and fields[2:] == [b"", b""]:
            if fields[0].startswith(b"user=") and fields[1].startswith(b"auth=Bearer "):
                mailbox = fields[0][5:].decode("utf-8", "replace")
                token = fields[1][12:].decode("ascii", "replace")
        if mailbox is None or not self.check(mailbox, token):
            return await self.refuse(server, {"status": "401", "schemes": "bearer",
                                              "scope": "https://mail.google.com/"})
        return AuthResult(success=True, auth_data=mailbox)

    async def auth_OAUTHBEARER(self, server, args):
        blob = await self.initial(server, args)
        if blob is None:
            await server.push("501 5.5.2 Cannot decode the response")
            return AuthResult(success=False, handled=True)
        mailbox = token = None
        # gs2-header "n,a=MAILBOX," then \x01-separated key=value pairs, ending \x01\x01.
        header, _, rest = blob.partition(b"\x01")
        if header.startswith(b"n,a=") and header.endswith(b",") and rest.endswith(b"\x01\x01"):
            mailbox = header[4:-1].decode("utf-8", "replace").replace("=2C", ",").replace("=3D", "=")
            for pair in rest[:-2].split(b"\x01"):
                if pair.startswith(b"auth=Bearer "):
                    token = pair[12:].decode("ascii", "replace")
        if mailbox is None or token is None or not self.check(mailbox, token):
            return await self.refuse(server, {"status": "invalid_token", "schemes": "bearer",
                                              "scope": "https://mail.google.com/"})
        return AuthResult(success=True, auth_data=mailbox)

    async def handle_DATA(self, server, session, envelope):
        with self.state.lock:
            self.state.counters["messages"] += 1
            n = self.state.counters["messages"]
        base = os.path.join(self.directory, "%d" % n)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or b"")
        with open(base + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from,
                       "rcpt_tos": envelope.rcpt_tos,
                       "tls": server.transport.get_extra_info("ssl_object") is not None,
                       "peer_port": session.peer[1],
                       "authenticated": bool(session.authenticated),
                       "auth_mailbox": session.auth_data}, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as %d" % n


def make_control_handler(state):
    class ControlHandler(JSONControlHandler):

        def do_GET(self):
            if self.path.partition("?")[0] == "/counters":
                with state.lock:
                    return self.answer(200, dict(state.counters))
            return self.answer(404, {"error": "not found"})

        def do_POST(self):
            path, _, query = self.path.partition("?")
            params = dict(urllib.parse.parse_qsl(query))
            if path == "/refuse":
                with state.lock:
                    state.refuse_next = int(params.get("count", "1"))
                return self.answer(200, {"ok": True})
            return self.answer(404, {"error": "not found"})

    return ControlHandler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--mailbox", action="append", required=True)
    p.add_argument("--token-secret", default="")
    p.add_argument("--token-secret-file")
    p.add_argument("--only-oauthbearer", action="store_true")
    p.add_argument("--idle-timeout", type=float, default=300)
    args = p.parse_args()
    if args.token_secret_file:
        with open(args.token_secret_file, "rb") as f:
            secret = f.read().strip()
    else:
        secret = args.token_secret.encode()
    if not secret:
        p.error("--token-secret or --token-secret-file is required")

    tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_context.load_cert_chain(args.cert, args.key)
    state = State()
    handler = Handler(args.dir, secret, set(args.mailbox), state)
    excluded = ["LOGIN", "PLAIN"] + (["XOAUTH2"] if args.only_oauthbearer else [])

    def factory():
        return SMTP(handler, hostname="test.invalid", timeout=args.idle_timeout,
                    tls_context=tls_context, require_starttls=True,
                    auth_required=True, auth_require_tls=True,
                    auth_exclude_mechanism=excluded)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0))
    control = start_control_server(make_control_handler(state))
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    print("CONTROL %d" % control.server_address[1], flush=True)

    def watch_stdin():
        sys.stdin.read()
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()

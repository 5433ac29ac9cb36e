#!/usr/bin/python3
"""Test OAuth2 authorisation server for Mailgate's tests (Debian's python3, stdlib only).

Serves HTTPS on 127.0.0.1 on an ephemeral port with --cert/--key, and a
plain-HTTP control port beside it (the tests' HTTP client speaks plain HTTP
only). Prints "PORT <n>" and then "CONTROL <n>" once both listen; exits when
stdin closes, so a test process that dies cannot leave it behind.

OAuth endpoints (HTTPS):
  GET  /authorize  auto-approves: checks client_id, response_type=code,
                   redirect_uri (http://127.0.0.1:<port>/), code_challenge and
                   code_challenge_method=S256; answers 302 to
                   redirect_uri?code=...&state=... (knobs: a wrong state, or
                   error=access_denied). A bad client or redirect_uri gets a 400
                   page, never a redirect (RFC 6749 §4.1.2.1).
  POST /token      grant_type=authorization_code (PKCE S256 verifier,
                   redirect_uri, client; codes are single-use) and
                   grant_type=refresh_token (known, not revoked; with rotation
                   on, each refresh returns a new refresh token and revokes the
                   old one). Errors are RFC 6749 §5.2 JSON.

Access tokens are "ya29.<expiry unix>.<random hex>.<hmac-sha256 hex>", the
HMAC keyed with --token-secret over "<expiry>.<random>", so a separate SMTP
server (oauth_smtp_server.py) given the same secret can check them without
talking to this process.

Control endpoints (plain HTTP, on the CONTROL port):
  POST /set?...      any of: mode=normal|invalid_grant|error_500|slow|redirect|oversized,
                     slow=<seconds> (with mode=slow), retry_after=<header value>,
                     rotation=0|1, lifetime=<seconds>, wrong_state=0|1, deny=0|1
  GET  /counters     {"refresh": n, "code": n, "authorize": n, "token_requests": n}
  POST /seed         issues a refresh token for the configured client:
                     {"refresh_token": "..."}
  POST /mint?lifetime=<seconds>   an access token (may be already expired
                     with a negative lifetime): {"access_token": "..."}
  POST /revoke-all   revokes every refresh token issued so far
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from control_server import JSONControlHandler, start_control_server

REDIRECT_URI = re.compile(r"^http://127\.0\.0\.1:[0-9]{1,5}/$")
MAX_BODY = 64 * 1024


class Provider:
    def __init__(self, client_id, client_secret, token_secret):
        self.lock = threading.Lock()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_secret = token_secret
        self.mode = "normal"
        self.slow = 0.0
        self.retry_after = None
        self.rotation = False
        self.lifetime = 3600
        self.wrong_state = False
        self.deny = False
        self.counters = {"refresh": 0, "code": 0, "authorize": 0, "token_requests": 0}
        self.codes = {}            # code -> dict(challenge, client_id, redirect_uri, used)
        self.refresh_tokens = {}   # token -> dict(client_id, revoked)

    def access_token(self, lifetime=None):
        expiry = int(time.time()) + (self.lifetime if lifetime is None else lifetime)
        nonce = secrets.token_hex(16)
        message = ("%d.%s" % (expiry, nonce)).encode()
        mac = hmac.new(self.token_secret, message, hashlib.sha256).hexdigest()
        return "ya29.%d.%s.%s" % (expiry, nonce, mac)

    def new_refresh_token(self, client_id):
        token = "1//" + secrets.token_urlsafe(32)
        self.refresh_tokens[token] = {"client_id": client_id, "revoked": False}
        return token


def parse_form(raw):
    """A form body or query as a dict; None when a name repeats (RFC 6749 §3.1)."""
    pairs = urllib.parse.parse_qsl(raw, keep_blank_values=True, strict_parsing=False)
    result = {}
    for name, value in pairs:
        if name in result:
            return None
        result[name] = value
    return result


def make_oauth_handler(provider):
    class OAuthHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            # Never log request lines: they carry codes and states.
            pass

        def send_json(self, status, obj, extra_headers=()):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra_headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def send_page(self, status, text):
            body = ("<html><body><p>%s</p></body></html>" % text).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path != "/authorize":
                return self.send_page(404, "not found")
            params = parse_form(query)
            with provider.lock:
                provider.counters["authorize"] += 1
                if params is None:
                    return self.send_page(400, "repeated parameter")
                redirect_uri = params.get("redirect_uri", "")
                if params.get("client_id") != provider.client_id or not REDIRECT_URI.match(redirect_uri):
                    return self.send_page(400, "unknown client or redirect_uri")
                state = params.get("state", "")
                if provider.wrong_state:
                    state = "not-" + state
                if provider.deny:
                    target = redirect_uri + "?" + urllib.parse.urlencode({"error": "access_denied", "state": state})
                elif (params.get("response_type") != "code" or params.get("code_challenge_method") != "S256"
                      or not params.get("code_challenge")):
                    target = redirect_uri + "?" + urllib.parse.urlencode({"error": "invalid_request", "state": state})
                else:
                    code = secrets.token_urlsafe(24)
                    provider.codes[code] = {"challenge": params["code_challenge"], "client_id": params["client_id"],
                                            "redirect_uri": redirect_uri, "used": False}
                    target = redirect_uri + "?" + urllib.parse.urlencode({"code": code, "state": state})
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self):
            path = self.path.partition("?")[0]
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                return self.send_json(413, {"error": "invalid_request"})
            raw = self.rfile.read(length).decode("utf-8", "replace")
            if path != "/token":
                return self.send_json(404, {"error": "not_found"})
            with provider.lock:
                provider.counters["token_requests"] += 1
                mode, slow, retry_after = provider.mode, provider.slow, provider.retry_after
            if mode == "slow":
                time.sleep(slow)
            elif mode == "error_500":
                headers = [("Retry-After", retry_after)] if retry_after else []
                return self.send_json(500, {"error": "server_error"}, headers)
            elif mode == "redirect":
                self.send_response(302)
                self.send_header("Location", "https://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            elif mode == "oversized":
                filler = "x" * (1024 * 1024)
                return self.send_json(200, {"access_token": "ya29.big", "expires_in": 3600, "padding": filler})
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/x-www-form-urlencoded":
                return self.send_json(400, {"error": "invalid_request"})
            form = parse_form(raw)
            if form is None:
                return self.send_json(400, {"error": "invalid_request"})
            grant = form.get("grant_type")
            with provider.lock:
                if grant == "refresh_token":
                    provider.counters["refresh"] += 1
                elif grant == "authorization_code":
                    provider.counters["code"] += 1
                if form.get("client_id") != provider.client_id:
                    return self.send_json(401, {"error": "invalid_client"})
                if provider.client_secret is not None and not hmac.compare_digest(
                        form.get("client_secret", "").encode(), provider.client_secret.encode()):
                    return self.send_json(401, {"error": "invalid_client"})
                if grant == "refresh_token":
                    if mode == "invalid_grant":
                        return self.send_json(400, {"error": "invalid_grant",
                                                    "error_description": "Token has been expired or revoked."})
                    token = form.get("refresh_token", "")
                    known = provider.refresh_tokens.get(token)
                    if known is None or known["revoked"] or known["client_id"] != form["client_id"]:
                        return self.send_json(400, {"error": "invalid_grant"})
                    answer = {"access_token": provider.access_token(), "token_type": "Bearer",
                              "expires_in": provider.lifetime}
                    if provider.rotation:
                        known["revoked"] = True
                        answer["refresh_token"] = provider.new_refresh_token(form["client_id"])
                    return self.send_json(200, answer)
                if grant == "authorization_code":
                    code = provider.codes.get(form.get("code", ""))
                    if code is None or code["used"]:
                        return self.send_json(400, {"error": "invalid_grant"})
                    code["used"] = True  # single-use, whatever follows
                    verifier = form.get("code_verifier", "")
                    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                    if (not re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", verifier)
                            or not hmac.compare_digest(challenge, code["challenge"])
                            or form.get("redirect_uri") != code["redirect_uri"]
                            or form["client_id"] != code["client_id"]):
                        return self.send_json(400, {"error": "invalid_grant"})
                    return self.send_json(200, {"access_token": provider.access_token(), "token_type": "Bearer",
                                                "expires_in": provider.lifetime,
                                                "refresh_token": provider.new_refresh_token(form["client_id"]),
                                                "scope": "https://mail.google.com/"})
                return self.send_json(400, {"error": "unsupported_grant_type"})

    return OAuthHandler


def make_control_handler(provider):
    class ControlHandler(JSONControlHandler):

        def do_GET(self):
            path = self.path.partition("?")[0]
            if path == "/counters":
                with provider.lock:
                    return self.answer(200, dict(provider.counters))
            return self.answer(404, {"error": "not found"})

        def do_POST(self):
            path, _, query = self.path.partition("?")
            params = parse_form(query) or {}
            with provider.lock:
                if path == "/set":
                    if "mode" in params:
                        if params["mode"] not in ("normal", "invalid_grant", "error_500", "slow", "redirect", "oversized"):
                            return self.answer(400, {"error": "unknown mode"})
                        provider.mode = params["mode"]
                    if "slow" in params:
                        provider.slow = float(params["slow"])
                    if "retry_after" in params:
                        provider.retry_after = params["retry_after"] or None
                    if "rotation" in params:
                        provider.rotation = params["rotation"] == "1"
                    if "lifetime" in params:
                        provider.lifetime = int(params["lifetime"])
                    if "wrong_state" in params:
                        provider.wrong_state = params["wrong_state"] == "1"
                    if "deny" in params:
                        provider.deny = params["deny"] == "1"
                    return self.answer(200, {"ok": True})
                if path == "/seed":
                    return self.answer(200, {"refresh_token": provider.new_refresh_token(provider.client_id)})
                if path == "/mint":
                    lifetime = int(params.get("lifetime", str(provider.lifetime)))
                    return self.answer(200, {"access_token": provider.access_token(lifetime)})
                if path == "/revoke-all":
                    for token in provider.refresh_tokens.values():
                        token["revoked"] = True
                    return self.answer(200, {"ok": True})
            return self.answer(404, {"error": "not found"})

    return ControlHandler


def read_secret(args):
    if args.token_secret_file:
        with open(args.token_secret_file, "rb") as f:
            return f.read().strip()
    return args.token_secret.encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", help="omit for a public client (any secret, or none, accepted)")
    p.add_argument("--token-secret", default="")
    p.add_argument("--token-secret-file")
    p.add_argument("--lifetime", type=int, default=3600)
    p.add_argument("--rotation", action="store_true")
    args = p.parse_args()
    secret = read_secret(args)
    if not secret:
        p.error("--token-secret or --token-secret-file is required")

    provider = Provider(args.client_id, args.client_secret, secret)
    provider.lifetime = args.lifetime
    provider.rotation = args.rotation

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    oauth = ThreadingHTTPServer(("127.0.0.1", 0), make_oauth_handler(provider))
    oauth.daemon_threads = True
    # The handshake happens in the request thread, so a stalled client holds up no one.
    oauth.socket = context.wrap_socket(oauth.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=oauth.serve_forever, daemon=True).start()
    control = start_control_server(make_control_handler(provider))
    print("PORT %d" % oauth.server_address[1], flush=True)
    print("CONTROL %d" % control.server_address[1], flush=True)
    sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    main()

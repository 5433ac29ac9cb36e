#!/usr/bin/python3
"""A local SMTP server that captures what it receives, for `make run` and the
end-to-end tests. Debian's python3-aiosmtpd; run with /usr/bin/python3.

Each accepted message is written to --spool as NNNNNN.eml (the exact bytes
after DATA, with CRLF line ends restored) and NNNNNN.json (envelope), and/or
printed to stdout with --print. Optional STARTTLS, implicit TLS and AUTH
make it a realistic peer for the SMTP client.

Recipients whose local part starts with "refuse5" are refused with 550,
"refuse4" with 450 (for tests of refused recipients); --size-limit sets the
SIZE the server announces and enforces.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword, SMTP


class Capture:
    def __init__(self, spool, echo):
        self.spool = spool
        self.echo = echo
        self.lock = threading.Lock()
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("refuse5"):
            return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
        if local.startswith("refuse4"):
            return "450 4.2.1 <%s>: Recipient address rejected: Try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            number = self.count
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        if self.spool:
            base = os.path.join(self.spool, "%06d" % number)
            with open(base + ".eml.tmp", "wb") as f:
                f.write(raw)
            with open(base + ".json", "w") as f:
                json.dump({
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    # session.ssl is only set after STARTTLS; with implicit
                    # TLS the transport itself carries the SSL object.
                    "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                    "auth": session.authenticated,
                    "login": (session.mailgate_login.login.decode() if isinstance(getattr(session, "mailgate_login", None), LoginPassword) else None),
                }, f)
            # Rename last so a reader never sees half a message.
            os.rename(base + ".eml.tmp", base + ".eml")
        if self.echo:
            print("=" * 72)
            print("Message %d from %s to %s" % (number, envelope.mail_from, ", ".join(envelope.rcpt_tos)))
            print("-" * 72)
            print(raw.decode("utf-8", "replace").replace("\r\n", "\n"))
            sys.stdout.flush()
        return "250 2.0.0 Message accepted for delivery"


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and auth_data.login == self.user and auth_data.password == self.password:
            session.mailgate_login = auth_data
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--spool", help="directory for captured messages")
    parser.add_argument("--print", dest="echo", action="store_true", help="print each message")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--starttls", action="store_true", help="offer STARTTLS (needs --tls-cert/--tls-key)")
    parser.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (SMTPS)")
    parser.add_argument("--size-limit", type=int, default=64 * 1024 * 1024,
                        help="largest message accepted, announced as SIZE")
    parser.add_argument("--auth-user")
    parser.add_argument("--auth-password-file", help="file holding the AUTH password (never on the command line)")
    args = parser.parse_args()

    if args.spool:
        os.makedirs(args.spool, exist_ok=True)
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)

    kwargs = {}
    if args.auth_user:
        with open(args.auth_password_file) as f:
            password = f.read().strip()
        # aiosmtpd only knows about TLS negotiated by STARTTLS: with implicit
        # TLS the whole connection is encrypted, so AUTH must not wait for it.
        kwargs.update(authenticator=Authenticator(args.auth_user, password), auth_required=True,
                      auth_require_tls=bool(args.starttls))
    if args.starttls:
        kwargs.update(tls_context=context, require_starttls=True)
    controller = Controller(
        Capture(args.spool, args.echo), hostname=args.host, port=args.port,
        ssl_context=context if args.implicit_tls else None,
        server_hostname="localhost", data_size_limit=args.size_limit,
        decode_data=False, **kwargs)
    controller.start()
    print("READY %s:%d" % (args.host, args.port), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Test SMTP server for Mailgate's SMTPTests (run with Debian's /usr/bin/python3).

Listens on 127.0.0.1 on an ephemeral port, prints "PORT <n>" once it accepts
connections, and stores every accepted message in --dir as
<n>.json (envelope) and <n>.eml (the raw, dot-unstuffed DATA bytes, or the
BDAT chunks joined), so the Swift tests can assert on exactly what arrived.
With --chunking it also announces CHUNKING and takes BDAT (RFC 3030), which
aiosmtpd itself does not implement. Exits when stdin closes, so a
test process that dies cannot leave it behind.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class ChunkingSMTP(SMTP):
    """aiosmtpd's SMTP with BDAT. The chunks of a transaction are kept on
    its envelope, so RSET and the end of a transaction (which make a new
    envelope) drop them."""

    async def smtp_BDAT(self, arg):
        words = (arg or "").split()
        if not (1 <= len(words) <= 2 and words[0].isdigit()
                and (len(words) == 1 or words[1].upper() == "LAST")):
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            # Without a size the chunk cannot be skipped: end the session.
            self.transport.close()
            return
        size, last = int(words[0]), len(words) == 2
        try:
            # RFC 3030: the chunk is read even when it is refused, so that
            # its octets are never taken for commands.
            chunk = await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            return
        if await self.check_helo_needed():
            return
        if not self.envelope.rcpt_tos:
            await self.push("554 5.5.1 Error: no valid recipients")
            return
        chunks = getattr(self.envelope, "chunks", [])
        chunks.append(chunk)
        self.envelope.chunks = chunks
        if not last:
            await self.push("250 2.0.0 %d octets received" % size)
            return
        self.envelope.original_content = self.envelope.content = b"".join(chunks)
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


class Recorder:
    def __init__(self, directory, pipelining, reject_rcpt, hang_up_on_message, chunking=False):
        self.directory = directory
        self.hang_up_on_message = hang_up_on_message
        self.count = 0
        self.pipelining = pipelining
        self.reject_rcpt = reject_rcpt
        self.chunking = chunking

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            # aiosmtpd reads commands strictly in order, so it copes with
            # pipelined input; it just does not advertise it.
            responses.insert(1, "250-PIPELINING")
        if self.chunking:
            responses.insert(1, "250-CHUNKING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reject_rcpt and self.reject_rcpt in address:
            return "550 5.1.1 <%s>: User unknown" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.directory, "%d" % self.count)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or b"")
        with open(base + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from,
                       "rcpt_tos": envelope.rcpt_tos,
                       "tls": server.transport.get_extra_info("ssl_object") is not None,
                       "peer_port": session.peer[1],
                       "authenticated": bool(session.authenticated),
                       "bdat": hasattr(envelope, "chunks")}, f)
        # Rename last, so a reader never sees a half-written message.
        os.rename(base + ".eml.tmp", base + ".eml")
        os.rename(base + ".json.tmp", base + ".json")
        if self.count == self.hang_up_on_message:
            # The message is stored but the client never hears so: the case
            # in which a client must not send it again.
            server.transport.close()
        return "250 2.0.0 Ok: queued as %d" % self.count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--exclude-mechanism", action="append", default=[])
    p.add_argument("--idle-timeout", type=float, default=300)
    p.add_argument("--pipelining", action="store_true")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--reject-rcpt")
    p.add_argument("--hang-up-on-message", type=int, default=0)
    p.add_argument("--chunking", action="store_true")
    args = p.parse_args()

    tls_context = None
    if args.cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.cert, args.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == (args.user or "").encode()
              and auth_data.password == (args.password or "").encode())
        # handled=False: let aiosmtpd send its 535 (the default, True,
        # means "I replied myself" and leaves the client waiting).
        return AuthResult(success=ok, handled=False)

    handler = Recorder(args.dir, args.pipelining, args.reject_rcpt, args.hang_up_on_message, args.chunking)

    def factory():
        kwargs = dict(hostname="test.invalid", timeout=args.idle_timeout,
                      auth_exclude_mechanism=args.exclude_mechanism)
        if tls_context is not None and not args.implicit_tls:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if args.user is not None:
            kwargs.update(authenticator=authenticator, auth_required=True,
                          auth_require_tls=tls_context is not None and not args.implicit_tls)
        return (ChunkingSMTP if args.chunking else SMTP)(handler, **kwargs)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        factory, "127.0.0.1", 0, ssl=tls_context if args.implicit_tls else None))
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)

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

#!/usr/bin/python3
"""A one-connection SMTP server that follows a fixed script, for replies no
real server sends on demand (malformed lines, injected bytes after the
STARTTLS 220, EHLO refusals). Plain Python, no packages (SMTPTests'
ScriptedServer).

Usage: scripted_smtp_server.py STEPS.json CLIENT.log [CERT KEY]
  prints "PORT <n>" once it listens; STEPS is a list of {"send": text},
  {"expect": prefix}, {"starttls": true}, {"accept": true} (close this
  connection, as a server does after a failed AUTH, and serve the client's
  next one: the log gets a "## new connection" line), {"hang_up": true}
  (the same, but the log gets "## hung up" as soon as this connection is
  closed, so a test can wait for that before it makes the client notice)
  or {"close": true};
  every line the client sends is logged to CLIENT.log.
"""
import json, socket, ssl, sys

steps = json.load(open(sys.argv[1]))
log = open(sys.argv[2], "w")
cert, key = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(2)
print("PORT %d" % srv.getsockname()[1], flush=True)
srv.settimeout(10)
conn, _ = srv.accept()
conn.settimeout(10)
reader = conn.makefile("rb")
try:
    for step in steps:
        if "send" in step:
            conn.sendall(step["send"].encode())
        elif "expect" in step:
            line = reader.readline()
            log.write(line.decode(errors="replace"))
            log.flush()
            if not line.upper().startswith(step["expect"].upper().encode()):
                log.write("!! expected %s\n" % step["expect"])
                break
        elif "starttls" in step:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            conn = ctx.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
        elif "accept" in step or "hang_up" in step:
            # The file from makefile() holds the socket open: without
            # closing it too, the client would see no hang-up.
            reader.close()
            conn.close()
            if "hang_up" in step:
                log.write("## hung up\n")
                log.flush()
            conn, _ = srv.accept()
            conn.settimeout(10)
            reader = conn.makefile("rb")
            log.write("## new connection\n")
            log.flush()
        elif "close" in step:
            break
    else:
        # Script done: wait for the client to hang up, logging what it says.
        while True:
            line = reader.readline()
            if not line:
                break
            log.write(line.decode(errors="replace"))
            log.flush()
except (OSError, ssl.SSLError) as e:
    log.write("!! %s\n" % e)
conn.close()

#!/usr/bin/python3
"""A tiny SMTP server that says CONNECTED on stdout when a client arrives,
waits, then accepts one message: lets a test act while a request is in
flight (EndToEndTests' lifecycle tests).

Usage: slow_smtp_server.py PORT [DELAY]   (prints READY once it listens;
DELAY: seconds between the connection and the greeting, default 1.5)
"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(5)
print("READY", flush=True)
c, _ = s.accept()
print("CONNECTED", flush=True)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 1.5)
f = c.makefile("rb")
c.sendall(b"220 slow ESMTP\r\n")
while True:
    line = f.readline()
    if not line: break
    cmd = line.strip().upper()
    if cmd.startswith(b"EHLO") or cmd.startswith(b"HELO"): c.sendall(b"250 slow\r\n")
    elif cmd.startswith(b"DATA"):
        c.sendall(b"354 go\r\n")
        while f.readline() not in (b".\r\n", b""): pass
        c.sendall(b"250 2.0.0 queued\r\n"); print("DELIVERED", flush=True)
    elif cmd.startswith(b"QUIT"): c.sendall(b"221 bye\r\n"); break
    else: c.sendall(b"250 ok\r\n")
time.sleep(30)

#!/usr/bin/env python3
"""Sends a fixed number of send-email requests straight to Mailgate's FastCGI
socket, as nginx would (one connection per request, nginx's usual params),
with no web server in between: for instruction counts (callgrind) and CPU
per send (perf stat) that a busy machine does not disturb.

    fcgi-drive.py SOCKET COUNT [CONCURRENCY] [TOKEN]   (TOKEN default $BENCH_TOKEN)

Prints "sent=N ok=N statuses=..." and exits 1 unless every answer was 200.
"""
import os
import socket
import struct
import sys
import threading

BODY = (b'{"to": "bench@example.com", "subject": "Mailgate bench", '
        b'"message": "One of many identical messages from make bench."}')


def record(kind, request_id, content):
    return struct.pack("!BBHHBx", 1, kind, request_id, len(content), 0) + content


def name_value(name, value):
    def length(n):
        return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def request_bytes(token):
    params = {
        b"QUERY_STRING": b"", b"REQUEST_METHOD": b"POST", b"CONTENT_TYPE": b"application/json",
        b"CONTENT_LENGTH": str(len(BODY)).encode(), b"SCRIPT_NAME": b"/smtp/send-email",
        b"REQUEST_URI": b"/smtp/send-email", b"DOCUMENT_URI": b"/smtp/send-email",
        b"DOCUMENT_ROOT": b"/usr/share/nginx/html", b"SERVER_PROTOCOL": b"HTTP/1.1",
        b"REQUEST_SCHEME": b"http", b"GATEWAY_INTERFACE": b"CGI/1.1", b"SERVER_SOFTWARE": b"nginx/1.22.1",
        b"REMOTE_ADDR": b"127.0.0.1", b"REMOTE_PORT": b"40000", b"SERVER_ADDR": b"127.0.0.1",
        b"SERVER_PORT": b"8080", b"SERVER_NAME": b"localhost", b"REDIRECT_STATUS": b"200",
        b"HTTP_HOST": b"127.0.0.1:8080", b"HTTP_AUTHORIZATION": b"Bearer " + token.encode(),
        b"HTTP_CONTENT_TYPE": b"application/json", b"HTTP_CONTENT_LENGTH": str(len(BODY)).encode(),
        b"HTTP_PROXY": b"",
    }
    payload = b"".join(name_value(k, v) for k, v in params.items())
    return (record(1, 1, struct.pack("!HB5x", 1, 0))  # BEGIN_REQUEST, responder, no keep-conn
            + record(4, 1, payload) + record(4, 1, b"")
            + record(5, 1, BODY) + record(5, 1, b""))


def one(path, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(data)
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    s.close()
    stdout, pos = b"", 0
    while pos + 8 <= len(out):
        _, kind, _, length, padding = struct.unpack("!BBHHB", out[pos:pos + 7])
        if kind == 6:
            stdout += out[pos + 8:pos + 8 + length]
        pos += 8 + length + padding
    status = stdout.split(b"\r\n", 1)[0].split(b" ")
    return int(status[1]) if len(status) > 1 and status[0] == b"Status:" else 0


def main():
    path, count = sys.argv[1], int(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    token = sys.argv[4] if len(sys.argv) > 4 else os.environ["BENCH_TOKEN"]
    data = request_bytes(token)
    statuses, lock, left = {}, threading.Lock(), [count]

    def worker():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            status = one(path, data)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = statuses.get(200, 0)
    print("sent=%d ok=%d statuses=%s" % (count, ok, ",".join("%d:%d" % kv for kv in sorted(statuses.items()))))
    sys.exit(0 if ok == count else 1)


if __name__ == "__main__":
    main()

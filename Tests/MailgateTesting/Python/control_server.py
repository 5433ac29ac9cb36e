"""The plain-HTTP control port of the test servers (oauth_provider.py,
oauth_smtp_server.py): JSON answers, no request log, one thread per request.
Imported from the scripts' own directory."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JSONControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_control_server(handler):
    """Serves `handler` (a JSONControlHandler subclass) on a loopback port
    in a daemon thread; returns the server (its port: server_address[1])."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

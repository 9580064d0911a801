#!/usr/bin/python3
# The fdsup demo worker: serves HTTP on the listener fdsupd passes as fd 3
# (LISTEN_FDS) and reports readiness over $NOTIFY_SOCKET, with only the
# standard library.
import http.server
import os
import signal
import socket
import sys
import threading


def notify(message):
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.sendall(message.encode())


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        generation = os.environ.get("FDSUP_GENERATION", "?")
        body = f"hello from pid {os.getpid()} (generation {generation})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    def __init__(self, listener):
        # The listener is already bound and listening: never bind again.
        super().__init__(listener.getsockname()[:2], Hello, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_name, self.server_port = listener.getsockname()[:2]


if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
    sys.exit("worker.py: no listener passed; run it under fdsupd -c units/demo.toml")

server = Server(socket.socket(fileno=3))
# Draining: stop accepting, let the requests in flight finish, exit.
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
notify(f"READY=1\nSTATUS=serving on {server.server_name}:{server.server_port}\nMAINPID={os.getpid()}")
server.serve_forever()
notify("STOPPING=1")
server.server_close()

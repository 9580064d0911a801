#!/usr/bin/python3
# The fdsup demo worker: serves HTTP on the listener fdsupd passes as fd 3
# (LISTEN_FDS) and reports readiness over $NOTIFY_SOCKET, with only the
# standard library.
#
# Draining (SIGTERM, or SIGINT): stop accepting, finish every request in
# flight, exit 0, in well under a second. Why the first version sometimes sat
# out its whole drain_timeout and was killed:
# - The listener is shared by every instance (and fdsupd), and was blocking:
#   a connection wakes the select() of both workers, one accept() wins and
#   the other blocks in accept() (seen in /proc/PID/wchan: inet_csk_accept).
#   SIGTERM interrupted that accept(), the handler ran, and Python retried
#   the accept() (PEP 475), which blocked until another connection happened
#   to come to this instance: never, on an idle demo. So the listener is made
#   non-blocking, as libactivate/examples/common.c does for the same reason
#   (socketserver ignores the EAGAIN of an accept() that lost the race).
# - No Python signal handler runs: the first version started a thread from
#   one, in the main thread between two bytecodes, possibly inside another
#   Thread.start() holding threading's locks. SIGTERM and SIGINT are blocked
#   before any thread starts (threads inherit the mask), the server runs in
#   a thread, and the main thread takes the signal with sigwait().
# - Request threads are not daemons: server_close() joins them, so a request
#   accepted before the drain is answered, not cut when the process exits.
import http.server
import os
import signal
import socket
import sys
import threading

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


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
    # A client that connects and sends nothing holds a drain this long at most.
    timeout = 2

    def do_GET(self):
        generation = os.environ.get("FDSUP_GENERATION", "?")
        body = f"hello from pid {os.getpid()} (generation {generation})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    # Request threads are joined by server_close(): a drain finishes the
    # requests in flight instead of cutting them when the process exits.
    daemon_threads = False
    block_on_close = True

    def __init__(self, listener):
        # The listener is already bound and listening: never bind again.
        super().__init__(listener.getsockname()[:2], Hello, bind_and_activate=False)
        self.socket.close()
        self.socket = listener
        self.server_name, self.server_port = listener.getsockname()[:2]


if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
    sys.exit("worker.py: no listener passed; run it under fdsupd -c units/demo.toml")

signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
listener = socket.socket(fileno=3)
listener.setblocking(False)  # O_NONBLOCK: an accept() that lost the race returns EAGAIN
server = Server(listener)
serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="serve")
serving.start()
notify(f"READY=1\nSTATUS=serving on {server.server_name}:{server.server_port}\nMAINPID={os.getpid()}")
signal.sigwait(STOP_SIGNALS)
notify("STOPPING=1")
server.shutdown()  # serve_forever() returns: nothing more is accepted here
serving.join()
server.server_close()  # closes this copy of the listener, joins every request thread

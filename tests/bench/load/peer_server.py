#!/usr/bin/python3
# A misbehaving HTTP server for fdsup-load's tests: each mode produces one class of failure.
# usage: peer_server.py MODE PORTFILE [HOST]   (binds HOST (127.0.0.1) port 0, writes the port to PORTFILE)
#   reset      accept, then close with RST (SO_LINGER 0) before answering   -> fresh_reset
#   eof        read the request, then close politely without answering     -> fresh_eof
#   half       send half a response (Content-Length 100, 10 bytes), close   -> mid_response
#   race       answer the first request keep-alive, then RST on the second  -> keepalive_race
#   silent     accept and never answer                                      -> timeout
#   close      answer 200 with Connection: close, then close                -> forced_reconnects
#   chunked    answer 200 keep-alive with a chunked body                    -> ok only
import os
import socket
import struct
import sys
import threading

MODE, PORTFILE = sys.argv[1], sys.argv[2]
HOST = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
BODY = b"hello"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + BODY
held = []  # silent mode: connections kept open, never answered


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


def rst(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def serve(conn):
    try:
        if MODE == "reset":
            rst(conn)
            return
        if MODE == "silent":
            held.append(conn)
            return
        if not read_request(conn):
            conn.close()
            return
        if MODE == "eof":
            conn.shutdown(socket.SHUT_WR)
        elif MODE == "half":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            conn.shutdown(socket.SHUT_WR)
        elif MODE == "race":
            conn.sendall(OK)
            if read_request(conn):
                rst(conn)
                return
        elif MODE == "close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n" + BODY)
            conn.shutdown(socket.SHUT_WR)
        elif MODE == "chunked":
            while True:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n")
                if not read_request(conn):
                    break
        conn.close()
    except OSError:
        conn.close()


listener = socket.socket(socket.AF_INET6 if ":" in HOST else socket.AF_INET, socket.SOCK_STREAM)
listener.bind((HOST, 0))
listener.listen(1024)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(listener.getsockname()[1]))
os.rename(PORTFILE + ".tmp", PORTFILE)
while True:
    c, _ = listener.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()

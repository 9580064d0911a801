#!/usr/bin/env python3
"""keepalive_client.py PORT -- COMMAND...: one HTTP/1.1 keep-alive connection
to http-keepalive on 127.0.0.1:PORT across COMMAND (a restart).

Sends GET on a new connection and reads the answer ({"pid":..,
"generation":..}), runs COMMAND (which must succeed), then sends GET again
on the same connection. Passes when that second answer comes on the same
connection from a different worker process of a newer generation: the
connection was handed over, not reset or reopened. Every read has a
deadline."""
import json
import socket
import subprocess
import sys

DEADLINE = 30.0


def get(conn, reader):
    conn.sendall(b"GET / HTTP/1.1\r\nHost: fdsup-test\r\n\r\n")
    status = reader.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        sys.exit(f"keepalive_client: unexpected answer {status!r}")
    length = None
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        sys.exit("keepalive_client: answer without Content-Length")
    return json.loads(reader.read(length))


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: keepalive_client.py PORT -- COMMAND...")
    conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=DEADLINE)
    reader = conn.makefile("rb")
    before = get(conn, reader)
    print(f"before: {before}", flush=True)
    subprocess.run(sys.argv[3:], check=True, timeout=DEADLINE)
    after = get(conn, reader)
    print(f"after, same connection: {after}", flush=True)
    if after["pid"] == before["pid"] or int(after["generation"]) <= int(before["generation"]):
        sys.exit("keepalive_client: the same worker answered after the restart")
    reader.close()
    conn.close()


main()

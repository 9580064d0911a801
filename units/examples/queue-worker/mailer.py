#!/usr/bin/python3
"""A queue worker that must never run twice at once (fdsup's queue-worker example).

It takes an exclusive, non-blocking flock() on QUEUE/lease and writes its pid
there: a second mailer on the same queue exits 75 (EX_TEMPFAIL) at once
instead of waiting. Then it sends READY=1 to $NOTIFY_SOCKET and moves each
file of QUEUE/new, oldest name first, to QUEUE/sending (in progress), "sends"
it (--send-time seconds: the mail relay), moves it to QUEUE/done and appends
"PID NAME" to QUEUE/sent.log. SIGINT or SIGTERM: it finishes the file in
progress and exits 0. A file left in QUEUE/sending by a mailer that was
killed goes back to QUEUE/new when the next one holds the lease.
"""
import argparse
import fcntl
import os
import select
import signal
import socket
import sys
import time

EX_TEMPFAIL = 75


def log(message):
    print(f"mailer[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def notify(message):
    """Sends an sd_notify message when $NOTIFY_SOCKET is set."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), path)


def take_lease(queue):
    """The open lease file, locked; exits 75 when another mailer holds it."""
    fd = os.open(os.path.join(queue, "lease"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        log(f"{queue} is leased by pid {holder}: another mailer runs on it")
        sys.exit(EX_TEMPFAIL)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def recover(queue):
    """Puts back what a killed mailer left in progress."""
    for name in sorted(os.listdir(os.path.join(queue, "sending"))):
        os.rename(os.path.join(queue, "sending", name), os.path.join(queue, "new", name))
        log(f"{name}: back to new (left in progress by a mailer that did not finish)")


def send(queue, name, send_time):
    """Moves one file through sending/ to done/; False if it vanished meanwhile."""
    sending = os.path.join(queue, "sending", name)
    try:
        os.rename(os.path.join(queue, "new", name), sending)
    except FileNotFoundError:
        return False
    with open(sending, "rb") as message:
        size = len(message.read())
    time.sleep(send_time)  # the relay; a signal now only ends the loop after this file
    os.rename(sending, os.path.join(queue, "done", name))
    with open(os.path.join(queue, "sent.log"), "a", encoding="utf-8") as sent:
        sent.write(f"{os.getpid()} {name}\n")
    log(f"sent {name} ({size} bytes)")
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", required=True, help="the queue directory (new/, sending/, done/, lease)")
    parser.add_argument("--send-time", type=float, default=0.1, help="seconds one message takes to send")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between looks at new/ when idle")
    args = parser.parse_args()
    queue = os.path.abspath(args.queue)
    if not os.path.isdir(queue):
        log(f"--queue {queue}: not a directory")
        return 2
    lease = take_lease(queue)
    for sub in ("new", "sending", "done"):
        os.makedirs(os.path.join(queue, sub), exist_ok=True)
    recover(queue)

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: stopping.append(signal.Signals(number).name))
    log(f"holding the lease on {queue}")
    notify(f"READY=1\nSTATUS=serving {queue}\nMAINPID={os.getpid()}")
    sent = 0
    while not stopping:
        names = sorted(os.listdir(os.path.join(queue, "new")))
        for name in names:
            if stopping:
                break
            sent += send(queue, name, args.send_time)
        if not names and not stopping:
            select.select([wake_r], [], [], args.poll)
    notify("STOPPING=1")
    log(f"{stopping[0]}: exit 0 after sending {sent}")
    os.close(lease)
    return 0


if __name__ == "__main__":
    sys.exit(main())

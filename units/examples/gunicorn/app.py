"""A WSGI application for the gunicorn example: one short answer per request."""
import os


def app(environ, start_response):
    body = f"served by gunicorn worker {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

"""Serving WSGI applications (werkzeug's threaded server) and answering in JSON.

Every service of stackd is a WSGI application served by `serve()`. The server sends no
`Server` header (upstream's backend sends none). werkzeug 2.2's server closes every
connection after its response (`Connection: close`), so an error answered before a request
body was read never leaves unread bytes on a kept-alive connection; the apps still read (or,
for S3, stream) small bodies first, so a client that is still sending gets the answer.
"""

import contextlib
import json
import threading
import traceback

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .config import log

MAX_JSON_BODY = 4 * 1024 * 1024


class _Handler(WSGIRequestHandler):
    access_log = False

    def send_header(self, keyword, value):
        if keyword.lower() == "server":
            return
        super().send_header(keyword, value)

    def log_request(self, code="-", size="-"):
        if self.access_log:  # plain text: werkzeug colours its own lines, and they go to journald
            log('%s "%s" %s %s' % (self.address_string(), self.requestline, code, size))

    def log_error(self, format, *args):  # noqa: A002 (the base class's name)
        log("%s: %s" % (self.address_string(), format % args))

    def log(self, type, message, *args):  # noqa: A002
        if type != "info" or self.access_log:
            log(message % args if args else message)


def serve(name, bind, port, app, access_log=False):
    """Start a threaded HTTP/1.1 server for a WSGI app in a daemon thread; return the server."""
    handler = type("Handler_" + name.replace("-", "_"), (_Handler,), {"access_log": access_log})
    server = make_server(bind, port, app, threaded=True, request_handler=handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 3600},
                     name=name, daemon=True).start()
    return server


def json_bytes(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(obj, status=200, headers=()):
    return Response(json_bytes(obj), status=status, headers=list(headers),
                    content_type="application/json; charset=utf-8")


def drain(request, limit=MAX_JSON_BODY):
    """Read the whole body now (up to limit bytes); return it, or None when it is larger."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        return None
    return data


def answer_json_service(name, environ, start_response, route, app_error, error_response, codes, max_body):
    """The frame of a small JSON service (mail API, mock OAuth): route(request) -> Response;
    its own errors (app_error: .status .code .message .headers), an unknown route or method,
    and any crash are answered by error_response(status, code, message, headers) with the
    service's codes {"not_found", "method", "http", "internal"} ("http" may hold %d)."""
    request = Request(environ)
    try:
        response = route(request)
    except app_error as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
    except MethodNotAllowed as exc:
        response = error_response(405, codes["method"], "%s is not allowed here" % request.method,
                                  [("Allow", ", ".join(sorted(exc.valid_methods or ())))])
    except HTTPException as exc:  # no such route, or a body that could not be read
        if exc.code == 404:
            response = error_response(404, codes["not_found"], "no route for %s" % request.path[:200])
        else:
            code = codes["http"] % exc.code if "%d" in codes["http"] else codes["http"]
            response = error_response(exc.code, code, exc.description)
    except Exception:
        log("%s: internal error on %s %s:\n%s" % (name, request.method, request.path[:200],
                                                 traceback.format_exc()))
        response = error_response(500, codes["internal"],
                                  "internal error in the emulator (see the guest journal)")
    with contextlib.suppress(OSError, HTTPException):
        drain(request, max_body)  # an unread body, so that an early answer gets through
    return response(environ, start_response)

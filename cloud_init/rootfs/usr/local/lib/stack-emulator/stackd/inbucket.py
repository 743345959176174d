"""The mail catcher's web API (port 9001), shaped like Inbucket's REST API v1.

  GET    /api/v1/mailbox/<name>                 the mailbox's listing entries, oldest first
  DELETE /api/v1/mailbox/<name>                 purge the mailbox
  GET    /api/v1/mailbox/<name>/<id>            the message (and mark it seen)
  PATCH  /api/v1/mailbox/<name>/<id>            {"seen": bool}
  DELETE /api/v1/mailbox/<name>/<id>            delete the message
  GET    /api/v1/mailbox/<name>/<id>/source     the raw message
  GET    /  (also /index.html, /monitor, /status)   an HTML index: the health check

  GET    /api/v1/stack-emulator/messages?to=<address>&kind=<kind>&project=<id>&limit=<n>
         the emulator's out-of-band view (not Inbucket's): the caught mails, newest first,
         each {id, mailbox, to, subject, kind, link, code, project_id, received_at, text,
         html}; kind is verification, reset, otp, invitation or other (see mail_codes.py)

<name> may be a whole address: it is mapped as SMTP delivery maps recipients.
"""

import json
import urllib.parse
from html import escape

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Response

from . import mail_codes
from .mail import mailbox_name, message_details
from .web import answer_json_service, drain, json_response

MAX_BODY = 1024 * 1024
CORS = [("Access-Control-Allow-Origin", "*")]

INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Mail - Stack emulator</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>Mail catcher</h1>
<p>Inbucket-compatible API: <code>GET /api/v1/mailbox/&lt;name&gt;</code>.</p>
<ul>%s</ul>
</body></html>
"""

URLS = Map([
    Rule("/", endpoint="index", methods=["GET"]),
    Rule("/index.html", endpoint="index", methods=["GET"]),
    Rule("/monitor", endpoint="index", methods=["GET"]),
    Rule("/status", endpoint="index", methods=["GET"]),
    Rule("/api/v1/mailbox/<name>", endpoint="mailbox", methods=["GET", "DELETE"]),
    Rule("/api/v1/mailbox/<name>/<msg_id>", endpoint="message", methods=["GET", "PATCH", "DELETE"]),
    Rule("/api/v1/mailbox/<name>/<msg_id>/source", endpoint="source", methods=["GET"]),
    Rule("/api/v1/stack-emulator/messages", endpoint="oob_messages", methods=["GET"]),
], strict_slashes=False, merge_slashes=False)


class MailApiError(Exception):
    def __init__(self, status, code, message, headers=()):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


def not_found(what="message not found"):
    return MailApiError(404, "NOT_FOUND", what)


def error_response(status, code, message, headers=()):
    return json_response({"code": code, "error": message}, status, CORS + list(headers))


ERROR_CODES = {"not_found": "NOT_FOUND", "method": "METHOD_NOT_ALLOWED", "http": "HTTP_%d", "internal": "INTERNAL_ERROR"}


class InbucketApp:
    def __init__(self, state):
        self.store = state.mail

    def __call__(self, environ, start_response):
        return answer_json_service("mail-web", environ, start_response, self.route, MailApiError, error_response,
                                   ERROR_CODES, MAX_BODY)

    def route(self, request):
        endpoint, args = URLS.bind_to_environ(request.environ).match()
        return getattr(self, endpoint)(request, **args)

    def index(self, request):
        items = "".join('<li><a href="/api/v1/mailbox/%s">%s</a></li>' % (urllib.parse.quote(b), escape(b))
                        for b in self.store.mailboxes())
        return Response(INDEX % items, headers=CORS, content_type="text/html; charset=utf-8")

    def mailbox(self, request, name):
        box = mailbox_of(name)
        if request.method == "DELETE":
            self.store.delete(box)
            return json_response("OK", headers=CORS)
        return json_response(self.store.list(box), headers=CORS)

    def message(self, request, name, msg_id):
        box = mailbox_of(name)
        if request.method == "DELETE":
            if not self.store.delete(box, msg_id):
                raise not_found()
            return json_response("OK", headers=CORS)
        if request.method == "PATCH":
            seen = json_object(request).get("seen", True)
            if not isinstance(seen, bool):
                raise MailApiError(400, "SCHEMA_ERROR", "seen must be a boolean")
            if not self.store.set_seen(box, msg_id, seen):
                raise not_found()
            return json_response("OK", headers=CORS)
        meta, raw = self.store.get(box, msg_id)
        if meta is None:
            raise not_found()
        self.store.set_seen(box, msg_id, True)
        return json_response(message_details(meta, raw), headers=CORS)

    def source(self, request, name, msg_id):
        meta, raw = self.store.get(mailbox_of(name), msg_id)
        if meta is None:
            raise not_found()
        return Response(raw, headers=CORS, content_type="text/plain; charset=utf-8")

    def oob_messages(self, request):
        args = request.args
        unknown = sorted(set(args) - {"to", "kind", "project", "limit"})
        if unknown:
            raise MailApiError(400, "SCHEMA_ERROR", "unknown query parameter %s: use to, kind, project "
                               "and limit" % ", ".join(unknown))
        to = (args.get("to") or "").strip() or None
        if to is not None and mailbox_name(to) is None:
            raise MailApiError(400, "INVALID_MAILBOX", "to=%s is not an email address or a mailbox name" % to[:200])
        kind = args.get("kind") or None
        kinds = mail_codes.KINDS + (mail_codes.OTHER,)
        if kind is not None and kind not in kinds:
            raise MailApiError(400, "SCHEMA_ERROR", "kind must be one of %s, not %s" % (", ".join(kinds), kind[:100]))
        limit = args.get("limit") or "100"
        if not limit.isdigit() or not 1 <= int(limit) <= mail_codes.MAX_LIMIT:
            raise MailApiError(400, "SCHEMA_ERROR", "limit must be a whole number from 1 to %d" % mail_codes.MAX_LIMIT)
        found = mail_codes.messages(self.store, to, kind, args.get("project") or None, int(limit))
        return json_response(found, headers=CORS)


def mailbox_of(name):
    box = mailbox_name(name)
    if box is None:
        raise MailApiError(400, "INVALID_MAILBOX", "invalid mailbox name")
    return box


def json_object(request):
    """The JSON object body; {} for an empty body."""
    raw = drain(request, MAX_BODY)
    if raw is None:
        raise MailApiError(413, "PAYLOAD_TOO_LARGE", "request body larger than %d bytes" % MAX_BODY)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MailApiError(400, "BODY_PARSING_ERROR", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MailApiError(400, "SCHEMA_ERROR", "the request body must be a JSON object")
    return data


def create_app(state):
    return InbucketApp(state)

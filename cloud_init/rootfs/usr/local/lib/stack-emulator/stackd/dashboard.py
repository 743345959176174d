"""The dashboard port (${STACK_EMULATOR_PORT_PREFIX:-81}01): the handler pages an app links to.

  /                               307 to /console/
  /console/...                    the emulator console (console.py)
  /handler/sign-in (and sign-up)  a static page: the health check upstream uses
  /handler/email-verification     ?code=... verifies an email address (the link in the mail)
  /handler/<anything else>        a placeholder page
  /health, /api/health            {"status": "ok"}
"""

import contextlib
import traceback
from html import escape

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import console
from .config import log
from .web import drain, json_response

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - Stack emulator</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto">
<h1>{title}</h1>
{body}
</body></html>
"""

SIGN_IN_PATHS = ("/handler/sign-in", "/handler/signin", "/handler/sign-up", "/handler/signup")
URLS = Map([Rule("/", endpoint="root")]
           + [Rule(path, endpoint="sign_in") for path in SIGN_IN_PATHS]
           + [Rule("/handler/email-verification", endpoint="email_verification"),
              Rule("/handler/<path:name>", endpoint="handler_page"),
              Rule("/health", endpoint="health"),
              Rule("/api/health", endpoint="health")],
           strict_slashes=False, merge_slashes=False)


def page(title, body_html):
    """A small HTML page; title is text, body_html is HTML."""
    return PAGE.format(title=escape(title), body=body_html)


def html_response(html, status=200, headers=()):
    return Response(html, status=status, headers=list(headers), content_type="text/html; charset=utf-8")


class DashboardApp:
    """verify_email(code) -> bool marks the address of a verification code verified (the backend's)."""

    def __init__(self, state, verify_email=None):
        self.backend_host_port = state.cfg.backend_host_port
        self.verify_email = verify_email
        self.console = console.create_app(state)

    def __call__(self, environ, start_response):
        request = Request(environ)
        if console.owns(request.path):
            return self.console(environ, start_response)
        try:
            if request.method not in ("GET", "HEAD"):
                raise MethodNotAllowed(["GET", "HEAD"])
            endpoint, args = URLS.bind_to_environ(environ).match()
            response = getattr(self, endpoint)(request, **args)
        except NotFound:
            response = html_response(page("Not found", "<p>No such page.</p>"), 404)
        except HTTPException as exc:
            allowed = exc.valid_methods if isinstance(exc, MethodNotAllowed) else None
            headers = [("Allow", ", ".join(sorted(allowed)))] if allowed else []
            response = html_response(page("Error %d" % exc.code, "<p>%s</p>" % escape(exc.description)),
                                     exc.code, headers)
        except Exception:
            log("dashboard: internal error on %s %s:\n%s" % (request.method, request.path[:200],
                                                            traceback.format_exc()))
            response = html_response(page("Error 500", "<p>Internal error in the emulator "
                                          "(see the guest journal).</p>"), 500)
        with contextlib.suppress(OSError, HTTPException):
            drain(request, 64 * 1024)  # an unread body, so that an early answer gets through
        return response(environ, start_response)

    def root(self, request):
        return Response(b"", status=307, headers=[("Location", console.PREFIX + "/")])

    def sign_in(self, request):
        title = "Sign in" if request.path.rstrip("/").endswith("in") else "Sign up"
        return html_response(page(title, (
            "<p>Stack Auth emulator dashboard. Use the backend API on host port %d. "
            "See the project's users, teams, sessions and mails in the <a href=\"/console/\">console</a>.</p>"
            "<form><label>Email <input type=email name=email></label> "
            "<label>Password <input type=password name=password></label> "
            "<button disabled>%s</button></form>" % (self.backend_host_port, title))))

    def email_verification(self, request):
        code = request.args.get("code") or ""
        if self.verify_email is None:
            return html_response(page("Email verification", "<p>Email verification is not available "
                                      "in this emulator.</p>"), 501)
        ok = bool(code) and self.verify_email(code)
        return html_response(page("Email verification", "<p>%s</p>" % (
            "Your email address is verified." if ok
            else "This verification link is invalid or was already used.")), 200 if ok else 400)

    def handler_page(self, request, name):
        return html_response(page(name, "<p>Stack emulator.</p>"))

    def health(self, request):
        return json_response({"status": "ok"})


def create_app(state, verify_email=None):
    return DashboardApp(state, verify_email)

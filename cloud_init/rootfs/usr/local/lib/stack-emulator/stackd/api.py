"""The backend: Stack Auth's REST API under /api/v1, as a WSGI application.

Each route module owns a `Routes` table; this module mounts them, runs each request in one
database transaction, and encodes errors as upstream does (known errors with their code
headers, `x-stack-override-error-status` answered with 200 and `x-stack-actual-status`).
"""

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import (
    anonymous,
    api_keys,
    config_overrides,
    connected_accounts,
    contact_channels,
    emails,
    errors,
    internal_api_keys,
    local_emulator,
    oauth,
    oauth_accounts,
    otp,
    owned_projects,
    password,
    permissions,
    projects,
    sessions,
    teams,
    users,
)
from .config import log, short_error
from .context import Context
from .db import Unavailable
from .routing import Routes
from .web import drain, json_response

PREFIX = "/api/v1"
MODULES = (users, sessions, password, anonymous, projects, teams, permissions, contact_channels, emails,
           otp, api_keys, oauth, oauth_accounts, connected_accounts,
           owned_projects, internal_api_keys, config_overrides, local_emulator)

# Headers a browser app may send and read (upstream's backend answers CORS for any origin).
CORS_HEADERS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    ("Access-Control-Allow-Headers", "*"),
    ("Access-Control-Expose-Headers", "*"),
    ("Access-Control-Max-Age", "86400"),
]

health_routes = Routes()


@health_routes.get("/health", access=None, db=False)
def health(ctx):
    """200 {"status":"ok"}; with ?db=1 only when PostgreSQL and Redis answer."""
    state = ctx.state
    if ctx.query("db") in ("1", "true"):
        problems = []
        if not state.db_ready.is_set():
            problems.append("database not initialised: %s" % (state.db_init_error or "starting"))
        else:
            try:
                state.db.run(lambda cur: cur.execute("SELECT 1"))
            except Exception as exc:
                problems.append(short_error(exc))
        try:
            state.redis().ping()
        except Exception as exc:
            problems.append("Redis: %s" % short_error(exc))
        if problems:
            return json_response({"status": "error", "problems": problems}, 503)
    return {"status": "ok"}


class BackendApp:
    def __init__(self, state):
        self.state = state
        rules = []
        self.handlers = {}
        tables = [health_routes] + [m.routes for m in MODULES]
        for table in tables:
            for method, path, fn, access, uses_db in table.entries:
                endpoint = "%s %s" % (method, path)
                self.handlers[endpoint] = (fn, access, uses_db)
                rules.append(Rule(PREFIX + path, endpoint=endpoint, methods=[method]))
                if path == "/health":
                    rules.append(Rule("/health", endpoint=endpoint, methods=[method]))
        self.url_map = Map(rules, strict_slashes=False, merge_slashes=False)

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.respond(request)
        return response(environ, start_response)

    def respond(self, request):
        body = drain(request)
        if body is None:
            response = Response("request body too large", status=413, content_type="text/plain",
                                headers=[("Connection", "close")])
            return response
        if request.method == "OPTIONS":
            return Response(status=204, headers=CORS_HEADERS)
        ctx = Context(self.state, request, body)
        try:
            response = self.dispatch(ctx)
        except (errors.KnownError, errors.StatusError) as exc:
            response = Response(exc.body(), status=exc.status, headers=exc.headers())
        except Unavailable as exc:
            response = json_response({"code": "SERVICE_UNAVAILABLE", "error": str(exc)}, 503)
        except Exception as exc:
            import traceback
            log("500 on %s %s: %s\n%s" % (request.method, request.path, short_error(exc),
                                         traceback.format_exc()))
            response = Response("Internal server error in the stack emulator; the guest's journal "
                                "(journalctl -u stackd) has the traceback.", status=500,
                                content_type="text/plain; charset=utf-8")
        for name, value in CORS_HEADERS:
            response.headers.setdefault(name, value)
        override = (request.headers.get("x-stack-override-error-status")
                    or request.headers.get("x-hexclave-override-error-status"))
        if override == "true" and response.status_code >= 400:
            actual = response.status_code
            response.status_code = 200
            response.headers["X-Stack-Actual-Status"] = str(actual)
            response.headers["X-Hexclave-Actual-Status"] = str(actual)
        return response

    def dispatch(self, ctx):
        request = ctx.request
        if "\x00" in request.path or any("\x00" in k + v for k, v in request.args.items(multi=True)):
            raise errors.schema_error("Request validation failed on %s %s:\n  - the URL contains a NUL "
                                      "character" % (ctx.method, ctx.path.replace("\x00", "\\0")))
        adapter = self.url_map.bind_to_environ(ctx.request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            raise errors.route_not_found(ctx.request.url) from None
        except MethodNotAllowed:
            raise errors.StatusError(405, "Method %s is not allowed on %s" % (ctx.method, ctx.path)) from None
        fn, access, uses_db = self.handlers[endpoint]
        if not uses_db:
            return to_response(fn(ctx, **args))
        if not self.state.db_ready.is_set():
            raise Unavailable("the database is still starting: %s" % (self.state.db_init_error or "retrying"))

        def tx(cur):
            ctx.cur = cur
            ctx.after_commit.clear()  # a retried transaction starts over
            if access is not None:
                ctx.authenticate(access)
            return fn(ctx, **args)
        result = self.state.db.run(tx)
        for action in ctx.after_commit:
            action()
        return to_response(result)


def to_response(result):
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        status, obj = result
        return json_response(obj, status)
    return json_response(result)


def create_app(state):
    return BackendApp(state)

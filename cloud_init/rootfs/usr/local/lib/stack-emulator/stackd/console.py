"""The emulator console on the dashboard port: what each project holds, at a glance.

  GET  /console/?project=<id>&q=<text>        keys and the env an app needs, users, teams,
                                              sessions and recent mails of one project
  POST /console/users/<id>/delete             form field project; 303 back to the console
  POST /console/users/<id>/revoke-sessions    form field project; 303 back to the console

Server-rendered HTML without JavaScript and without a login: the host forwards bind
127.0.0.1 only. Every value is HTML-escaped. A POST whose Origin header names another site
is refused, so a page elsewhere cannot drive the actions. Ports on the page are the host
ports as the browser reaches them: the port this page came in on, shifted by the same
amount as the backend's and mail catcher's (a resumed snapshot keeps capture-time ports).
"""

import contextlib
import traceback
import urllib.parse
from html import escape

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import mail_codes
from .config import PROJECT_ID, log, short_error
from .validate import parse_uuid
from .web import drain

PREFIX = "/console"
MAX_FORM = 64 * 1024
LIMITS = {"users": 100, "teams": 100, "sessions": 50, "mails": 30}
KEY_LABELS = (("publishable_client_key", "Publishable client key"),
              ("secret_server_key", "Secret server key"),
              ("super_secret_admin_key", "Super secret admin key"))
ENV_PREFIXES = ("NEXT_PUBLIC_", "VITE_", "EXPO_PUBLIC_")
NOTICES = {"user-deleted": "The user was deleted.", "sessions-revoked": "The user's sessions were revoked."}

URLS = Map([Rule(PREFIX + "/", endpoint="overview", methods=["GET"]),
            Rule(PREFIX + "/users/<user_id>/delete", endpoint="delete_user", methods=["POST"]),
            Rule(PREFIX + "/users/<user_id>/revoke-sessions", endpoint="revoke_sessions", methods=["POST"])],
           strict_slashes=False, merge_slashes=False)

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}
header{background:#1d2433;color:#fff;padding:.8em 1.5em;display:flex;align-items:center;gap:1.5em;flex-wrap:wrap}
header h1{font-size:1.15em;margin:0} header a{color:#cfe0ff} header form{margin-left:auto}
main{padding:1em 1.5em;max-width:88em} section{background:#fff;border:1px solid #dde1e8;border-radius:6px;
padding:.6em 1em 1em;margin-bottom:1em} h2{font-size:1.05em;margin:.4em 0 .6em} h2 small{font-weight:normal;color:#667}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #eceef2;
vertical-align:top} th{font-weight:600;color:#556;font-size:.9em} code,pre{font:12.5px ui-monospace,monospace}
pre{background:#f0f2f5;padding:.6em .8em;border-radius:4px;overflow-x:auto;margin:.4em 0}
td form{display:inline} button{font:inherit;font-size:.85em;padding:.15em .6em;cursor:pointer}
button.danger{color:#a11} .yes{color:#17803d} .no{color:#a15c00} .muted{color:#778}
.notice{background:#e7f6ec;border:1px solid #9fd8b2;padding:.5em 1em;border-radius:6px;margin-bottom:1em}
table.narrow{width:auto} td.t{white-space:nowrap} h3{font-size:.95em;margin:.9em 0 .2em;color:#556}
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - Stack emulator console</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body><header><h1>Stack emulator console</h1>{nav}</header>
<main>{body}</main></body></html>
"""


def e(value):
    """HTML-escaped text of a value (None is empty)."""
    return "" if value is None else escape(str(value), quote=True)


def when(ts):
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC") if ts is not None else ""


def page(title, body, nav=""):
    return PAGE.format(title=e(title), style=STYLE, nav=nav, body=body)


def html_response(html, status=200, headers=()):
    return Response(html, status=status, headers=list(headers), content_type="text/html; charset=utf-8")


def message_page(title, text, status, project=None):
    back = "%s/?project=%s" % (PREFIX, urllib.parse.quote(project or PROJECT_ID))
    return html_response(page(title, '<section><h2>%s</h2><p>%s</p><p><a href="%s">Back to the console</a></p>'
                                     "</section>" % (e(title), e(text), e(back))), status)


def table(columns, rows, empty):
    if not rows:
        return '<p class="muted">%s</p>' % e(empty)
    head = "".join("<th>%s</th>" % e(c) for c in columns)
    return "<table><tr>%s</tr>%s</table>" % (head, "".join(rows))


def host_ports(host, cfg):
    """(host name, backend port, mail catcher port) as the browser reaches them, from the Host
    header of this request: the dashboard's host port moves the others by as much."""
    try:
        parts = urllib.parse.urlsplit("//" + (host or ""))
        name, port = parts.hostname, parts.port
    except ValueError:
        name, port = None, None
    delta = port - cfg.dashboard_host_port if port else 0
    backend, inbucket = cfg.backend_host_port + delta, cfg.inbucket_host_port + delta
    if not (0 < backend < 65536 and 0 < inbucket < 65536):
        backend, inbucket = cfg.backend_host_port, cfg.inbucket_host_port
    name = name or "127.0.0.1"
    return ("[%s]" % name if ":" in name else name), backend, inbucket


def env_lines(api_url, project_id, keys):
    """The environment an app needs (CONTRACT §4), as (name, value) pairs."""
    publishable = keys.get("publishable_client_key", "")
    out = [("STACK_API_URL", api_url), ("STACK_PROJECT_ID", project_id),
           ("STACK_PUBLISHABLE_CLIENT_KEY", publishable),
           ("STACK_SECRET_SERVER_KEY", keys.get("secret_server_key", ""))]
    for prefix in ENV_PREFIXES:
        out += [(prefix + "STACK_API_URL", api_url), (prefix + "STACK_PROJECT_ID", project_id),
                (prefix + "STACK_PUBLISHABLE_CLIENT_KEY", publishable)]
    return out


# ---------------------------------------------------------------------------- database

USERS_SQL = """
SELECT u.id, u.display_name, u.signed_up_at, u.is_anonymous, c.value AS email,
       coalesce(c.is_verified, false) AS verified,
       (SELECT count(*) FROM emulator.sessions s WHERE s.user_id = u.id
          AND (s.expires_at IS NULL OR s.expires_at > clock_timestamp())) AS sessions
FROM emulator.users u
LEFT JOIN emulator.contact_channels c ON c.user_id = u.id AND c.is_primary
WHERE u.project_id = %s AND (%s = '' OR c.value ILIKE %s OR u.display_name ILIKE %s OR u.id::text ILIKE %s)
ORDER BY u.signed_up_at DESC, u.id LIMIT %s
"""

MEMBERS_SQL = """
SELECT m.team_id, m.user_id, coalesce(c.value, u.display_name, m.user_id::text) AS label
FROM emulator.team_members m
JOIN emulator.users u ON u.id = m.user_id
LEFT JOIN emulator.contact_channels c ON c.user_id = u.id AND c.is_primary
WHERE m.project_id = %s AND m.team_id = ANY(%s::uuid[]) ORDER BY m.created_at
"""

SESSIONS_SQL = """
SELECT s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, s.is_impersonation,
       coalesce(c.value, u.display_name, s.user_id::text) AS label
FROM emulator.sessions s
JOIN emulator.users u ON u.id = s.user_id
LEFT JOIN emulator.contact_channels c ON c.user_id = u.id AND c.is_primary
WHERE s.project_id = %s AND (s.expires_at IS NULL OR s.expires_at > clock_timestamp())
ORDER BY s.last_used_at DESC LIMIT %s
"""


def load_project(cur, project_id, query):
    """Everything the overview shows of one project, or None when there is no such project."""
    cur.execute("SELECT id, display_name FROM emulator.projects ORDER BY created_at, id")
    projects = cur.fetchall()
    if not any(p["id"] == project_id for p in projects):
        return {"projects": projects, "project": None}
    cur.execute("SELECT kind, secret FROM emulator.api_keys WHERE project_id = %s", (project_id,))
    keys = {r["kind"]: r["secret"] for r in cur.fetchall()}
    like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cur.execute(USERS_SQL, (project_id, query, like, like, like, LIMITS["users"]))
    users = cur.fetchall()
    counts = {}
    for table_name in ("users", "teams", "sessions"):
        extra = (" AND (expires_at IS NULL OR expires_at > clock_timestamp())" if table_name == "sessions" else "")
        cur.execute("SELECT count(*) AS n FROM emulator.%s WHERE project_id = %%s%s" % (table_name, extra),
                    (project_id,))
        counts[table_name] = cur.fetchone()["n"]
    cur.execute("SELECT id, display_name, created_at FROM emulator.teams WHERE project_id = %s "
                "ORDER BY created_at DESC, id LIMIT %s", (project_id, LIMITS["teams"]))
    teams = cur.fetchall()
    members = {}
    if teams:
        cur.execute(MEMBERS_SQL, (project_id, [str(t["id"]) for t in teams]))
        for row in cur.fetchall():
            members.setdefault(row["team_id"], []).append(row)
    cur.execute(SESSIONS_SQL, (project_id, LIMITS["sessions"]))
    sessions = cur.fetchall()
    return {"projects": projects, "project": next(p for p in projects if p["id"] == project_id),
            "keys": keys, "users": users, "teams": teams, "members": members, "sessions": sessions,
            "counts": counts}


# ---------------------------------------------------------------------------- rendering

def render_nav(data, project_id, mail_index):
    options = "".join('<option value="%s"%s>%s (%s)</option>' % (
        e(p["id"]), " selected" if p["id"] == project_id else "", e(p["display_name"]), e(p["id"]))
        for p in data["projects"])
    return ('<a href="%s">Mail catcher</a><form method="get" action="%s/"><label>Project '
            '<select name="project">%s</select></label> <button>Switch</button></form>'
            % (e(mail_index), PREFIX, options))


def render_connect(data, project_id, api_url):
    keys = data["keys"]
    rows = ["<tr><td>%s</td><td><code>%s</code></td></tr>" % (e(label), e(keys.get(kind, "(none)")))
            for kind, label in KEY_LABELS]
    snippet = "\n".join("%s=%s" % (name, value) for name, value in env_lines(api_url, project_id, keys))
    return ('<section id="connect"><h2>Connect an app</h2>'
            '<table class="narrow"><tr><td>API URL</td><td><code>%s</code></td></tr><tr><td>Project ID</td>'
            '<td><code>%s</code></td></tr>%s</table><h3>Environment for an app</h3><pre id="env">%s</pre></section>'
            % (e(api_url), e(project_id), "".join(rows), e(snippet)))


def action_form(project_id, user_id, action, label, css=""):
    return ('<form method="post" action="%s/users/%s/%s"><input type="hidden" name="project" value="%s">'
            '<button class="%s">%s</button></form>' % (PREFIX, e(user_id), action, e(project_id), css, e(label)))


def render_users(data, project_id, query):
    rows = []
    for u in data["users"]:
        email = e(u["email"]) if u["email"] else '<span class="muted">(no email)</span>'
        if u["is_anonymous"]:
            email += ' <span class="muted">anonymous</span>'
        verified = '<span class="yes">yes</span>' if u["verified"] else '<span class="no">no</span>'
        actions = (action_form(project_id, u["id"], "revoke-sessions", "Revoke sessions") + " "
                   + action_form(project_id, u["id"], "delete", "Delete", "danger"))
        rows.append('<tr class="user" data-user-id="%s"><td title="%s">%s</td><td>%s</td><td>%s</td><td>%s</td>'
                    "<td>%d</td><td>%s</td></tr>" % (e(u["id"]), e(u["id"]), email, e(u["display_name"]),
                                                     e(when(u["signed_up_at"])), verified, u["sessions"], actions))
    search = ('<form method="get" action="%s/"><input type="hidden" name="project" value="%s">'
              '<input name="q" value="%s" placeholder="email, name or id"> <button>Search</button></form>'
              % (PREFIX, e(project_id), e(query)))
    shown = "%d of %d" % (len(rows), data["counts"]["users"]) if query or len(rows) < data["counts"]["users"] \
        else str(len(rows))
    return ('<section id="users"><h2>Users <small>%s</small></h2>%s%s</section>'
            % (shown, search, table(("Email", "Name", "Signed up", "Verified", "Sessions", ""), rows,
                                    "No users match." if query else "No users yet.")))


def render_teams(data):
    rows = []
    for t in data["teams"]:
        members = data["members"].get(t["id"], [])
        names = ", ".join(e(m["label"]) for m in members) or '<span class="muted">none</span>'
        rows.append("<tr><td>%s</td><td><code>%s</code></td><td>%s</td><td>%d: %s</td></tr>"
                    % (e(t["display_name"]), e(t["id"]), e(when(t["created_at"])), len(members), names))
    return ('<section id="teams"><h2>Teams <small>%d</small></h2>%s</section>'
            % (data["counts"]["teams"], table(("Name", "ID", "Created", "Members"), rows, "No teams yet.")))


def render_sessions(data):
    rows = ["<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>"
            % (e(s["label"]), e(when(s["created_at"])), e(when(s["last_used_at"])),
               e(when(s["expires_at"])) or '<span class="muted">never</span>',
               "yes" if s["is_impersonation"] else "")
            for s in data["sessions"]]
    return ('<section id="sessions"><h2>Sessions <small>%d active</small></h2>%s</section>'
            % (data["counts"]["sessions"], table(("User", "Created", "Last used", "Expires", "Impersonation"),
                                                 rows, "No active sessions.")))


def render_mails(mails, mail_base):
    rows = []
    for m in mails:
        where = "%s/api/v1/mailbox/%s/%s" % (mail_base, urllib.parse.quote(m["mailbox"] or ""),
                                             urllib.parse.quote(m["id"] or ""))
        link = '<a href="%s">open</a>' % e(m["link"]) if m["link"] else ""
        rows.append('<tr><td class="t">%s</td><td>%s</td><td><a href="%s">%s</a> <a class="muted" href="%s/source">'
                    "source</a></td><td>%s</td><td><code>%s</code></td><td>%s</td></tr>"
                    % (e((m["received_at"] or "")[:19].replace("T", " ")), e(", ".join(m["to"])), e(where),
                       e(m["subject"] or "(no subject)"), e(where), e(m["kind"]), e(m["code"]), link))
    return ('<section id="mails"><h2>Recent mails <small>newest %d</small></h2>%s</section>'
            % (LIMITS["mails"], table(("Received", "To", "Subject", "Kind", "Code", "Link"), rows,
                                      "No mail caught yet.")))


# ---------------------------------------------------------------------------- the app

class NotReady(Exception):
    """The database is not set up yet (stackd started a moment ago)."""


def failure_page(request, exc):
    from .db import Unavailable  # psycopg2: imported once the database is in use

    if isinstance(exc, Unavailable):
        return message_page("Database unavailable", "%s. Reload in a moment." % exc, 503)
    log("console: internal error on %s %s:\n%s" % (request.method, request.path[:200], traceback.format_exc()))
    return message_page("Error 500", "Internal error in the emulator: %s (see the guest journal)."
                        % short_error(exc), 500)


def owns(path):
    return path == PREFIX or path.startswith(PREFIX + "/")


class ConsoleApp:
    def __init__(self, state):
        self.state = state

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_FORM
        try:
            if request.path == PREFIX:
                query = request.query_string.decode("latin-1")
                location = PREFIX + "/" + ("?" + query if query else "")
                response = Response(b"", status=308, headers=[("Location", location)])
            else:
                endpoint, args = URLS.bind_to_environ(environ).match()
                response = getattr(self, endpoint)(request, **args)
        except NotFound:
            response = message_page("Not found", "The console has no page at %s." % request.path[:200], 404)
        except MethodNotAllowed as exc:
            response = message_page("Method not allowed", "%s is not allowed here." % request.method, 405)
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods or ()))
        except HTTPException as exc:
            response = message_page("Error %d" % exc.code, exc.description, exc.code)
        except NotReady as exc:
            response = message_page("Database unavailable", "%s. Reload in a moment." % exc, 503)
        except Exception as exc:
            response = failure_page(request, exc)
        with contextlib.suppress(OSError, HTTPException):
            drain(request, MAX_FORM)
        return response(environ, start_response)

    def _db(self, fn):
        if not self.state.db_ready.is_set():
            raise NotReady("the database is still starting: %s" % (self.state.db_init_error or "retrying"))
        return self.state.db.run(fn)

    def overview(self, request):
        project_id = request.args.get("project") or PROJECT_ID
        query = (request.args.get("q") or "").strip()[:200]
        host, backend_port, inbucket_port = host_ports(request.host, self.state.cfg)
        api_url, mail_base = "http://%s:%d" % (host, backend_port), "http://%s:%d" % (host, inbucket_port)
        data = self._db(lambda cur: load_project(cur, project_id, query))
        nav = render_nav(data, project_id, mail_base + "/")
        if data["project"] is None:
            known = ", ".join(p["id"] for p in data["projects"]) or "none"
            return html_response(page("No such project", "<section><h2>No project %s</h2><p>Projects: %s. Pick "
                                      "one above.</p></section>" % (e(project_id), e(known)), nav), 404)
        mails = mail_codes.messages(self.state.mail, project_id=project_id, limit=LIMITS["mails"])
        notice = NOTICES.get(request.args.get("done") or "")
        body = ('<p class="notice">%s</p>' % e(notice) if notice else "") + "".join((
            render_connect(data, project_id, api_url), render_users(data, project_id, query),
            render_teams(data), render_sessions(data), render_mails(mails, mail_base)))
        return html_response(page(data["project"]["display_name"], body, nav))

    def _post(self, request, user_id, action):
        """Check the form's origin, project and user, run action(cur, project, user) in one
        transaction, and go back to the console."""
        origin = request.headers.get("Origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != request.host:
            return message_page("Refused", "This form must be sent from the console's own page "
                                "(Origin %s is not http://%s)." % (origin[:200], request.host), 403)
        project_id = request.form.get("project") or PROJECT_ID
        uid = parse_uuid(user_id)

        def tx(cur):
            if uid is None:
                return False
            cur.execute("SELECT 1 FROM emulator.users WHERE id = %s AND project_id = %s", (uid, project_id))
            if cur.fetchone() is None:
                return False
            action(cur, project_id, uid)
            return True
        if not self._db(tx):
            return message_page("No such user", "Project %s has no user %s: it may have been deleted already."
                                % (project_id, user_id[:100]), 404, project_id)
        return None

    def _back(self, request, done):
        project_id = request.form.get("project") or PROJECT_ID
        location = "%s/?%s" % (PREFIX, urllib.parse.urlencode({"project": project_id, "done": done}))
        return Response(b"", status=303, headers=[("Location", location)])

    def delete_user(self, request, user_id):
        failed = self._post(request, user_id, lambda cur, project_id, uid: cur.execute(
            "DELETE FROM emulator.users WHERE id = %s AND project_id = %s", (uid, project_id)))
        return failed or self._back(request, "user-deleted")

    def revoke_sessions(self, request, user_id):
        failed = self._post(request, user_id, lambda cur, project_id, uid: cur.execute(
            "DELETE FROM emulator.sessions WHERE user_id = %s AND project_id = %s", (uid, project_id)))
        return failed or self._back(request, "sessions-revoked")


def create_app(state):
    return ConsoleApp(state)

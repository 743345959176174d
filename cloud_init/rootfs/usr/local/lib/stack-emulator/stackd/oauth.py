"""OAuth sign-in through the mock provider: upstream's outer authorization-code flow with PKCE.

1. GET /auth/oauth/authorize/<provider> (what the SDK builds: client_id = project id,
   client_secret = publishable key, redirect_uri, state, code_challenge, type=authenticate|link,
   token, ...). The request is kept for ten minutes under a fresh inner state, and the browser
   goes on to the mock provider's /authorize: a 307 with a `stack-oauth-inner-<state>` cookie, or,
   with stack_response_mode=json (the SDK's own choice), 200 {"location": ...} and no cookie.
2. The provider sends the browser back to GET|POST /auth/oauth/callback/<provider> on the
   backend's address as the client used it. The backend trades the provider's code (PKCE) for
   tokens, reads the user, then: signs in the user of that provider account; or links the
   account to the user with the same email, per the project's oauth_account_merge_strategy
   (link_method: only when that address is verified; raise_error; allow_duplicates); or signs
   up a new user (or upgrades the anonymous user who started the flow). type=link connects the
   account to the signed-in user instead. The browser lands on redirect_uri with code and
   state (303); a known error lands there as error, errorCode, message and details (307).
3. POST /auth/oauth/token, grant_type=authorization_code: code, code_verifier, redirect_uri.
   A new session: access_token, refresh_token, is_new_user, after_callback_redirect_url.
"""

import time

from werkzeug.wrappers import Response

from . import (
    codes,
    connected_accounts,
    errors,
    internal_api_keys,
    oauth_accounts,
    oauth_client,
    tokens,
    users,
)
from .routing import Routes
from .validate import MISSING, Fields
from .web import json_bytes, json_response

routes = Routes()

OUTER_FLOW_SECONDS = 10 * 60
OUTER_FLOW_KEPT_SECONDS = 24 * 60 * 60  # kept longer, so that a late callback can still be answered
AUTHORIZATION_CODE_SECONDS = 5 * 60
OUTER_PURPOSE = "oauth_outer_flow"
CODE_PURPOSE = "oauth_authorization_code"
COOKIE_PREFIX = "stack-oauth-inner-"
PUBLIC_CLIENT_SENTINEL = "__stack_public_client__"
ENABLED_SCOPES = ("legacy",)
NATIVE_APP_SCHEME = "stack-auth-mobile-oauth-url"

AUTHORIZE_QUERY = ("type", "token", "provider_scope", "error_redirect_url", "error_redirect_uri",
                   "after_callback_redirect_url", "stack_response_mode", "hexclave_response_mode",
                   "client_id", "client_secret", "redirect_uri", "scope", "state", "grant_type",
                   "code_challenge", "code_challenge_method", "response_type")
URL_PARAMS = ("redirect_uri", "error_redirect_url", "error_redirect_uri", "after_callback_redirect_url")
REQUIRED = ("client_id", "client_secret", "redirect_uri", "scope", "state", "grant_type", "code_challenge",
            "code_challenge_method", "response_type")


def redirect_ok(config, url):
    """A trusted redirect URL (codes.redirect_allowed) or a native app's (upstream's
    isAcceptedNativeAppUrl: the stack-auth-mobile-oauth-url: scheme)."""
    parsed = codes.parse_url(url)
    return parsed is not None and (parsed[0] == NATIVE_APP_SCHEME or codes.redirect_allowed(config, url))


def check_redirect(config, url):
    if not redirect_ok(config, url):
        raise errors.redirect_url_not_whitelisted()


def redirect(url, status):
    return Response(b"", status=status, headers=[("Location", url)])


def project_of_client(cur, client_id):
    """The project a client_id names (`<project id>` or `<project id>#<branch>`), or None."""
    project_id = (client_id or "").split("#")[0]
    cur.execute("SELECT * FROM emulator.projects WHERE id = %s", (project_id,))
    return cur.fetchone()


def check_client_secret(cur, project, client_secret):
    if internal_api_keys.client_secret_ok(cur, project, client_secret):
        return
    if client_secret in ("", PUBLIC_CLIENT_SENTINEL):
        raise errors.publishable_key_required(project["id"])
    raise errors.invalid_key("publishable_client_key", project["id"])


# ---------------------------------------------------------------------------- 1. authorize

def read_authorize_query(ctx):
    f = Fields(ctx, dict(ctx.request.args.items()), where="query")  # unknown parameters are allowed
    values = {name: f.string(name, required=name in REQUIRED) for name in AUTHORIZE_QUERY}
    values = {k: v for k, v in values.items() if v is not MISSING}
    for name in URL_PARAMS:
        problem = codes.url_problem("query." + name, values[name]) if name in values else None
        if problem:
            f.problems.append(problem)
    f.one_of("type", ("authenticate", "link"))
    f.one_of("grant_type", ("authorization_code",))
    f.one_of("stack_response_mode", ("json", "redirect"))
    f.check()
    values.setdefault("type", "authenticate")
    return values


@routes.get("/auth/oauth/authorize/<provider_id>", access=None)
def authorize(ctx, provider_id):
    q = read_authorize_query(ctx)
    project = project_of_client(ctx.cur, q["client_id"])
    if project is None:
        raise errors.invalid_oauth_client_id_or_secret(q["client_id"])
    check_client_secret(ctx.cur, project, q["client_secret"])
    ctx.project, ctx.project_id = project, project["id"]
    provider = oauth_accounts.provider_config(ctx.config, provider_id)
    if provider is None:
        raise errors.oauth_provider_not_found_or_not_enabled()
    if q["type"] == "link" and not q.get("token"):
        raise errors.StatusError(400, "?token= query parameter is required for link type")
    after = q.get("after_callback_redirect_url")
    if after:
        check_redirect(ctx.config, after)
    # Upstream checks redirect_uri only when the provider sends the browser back; checking it
    # here fails the same way, before a test has gone through the provider's page.
    check_redirect(ctx.config, q["redirect_uri"])
    if q.get("provider_scope") and oauth_accounts.is_shared(provider):
        raise errors.oauth_extra_scope_not_available_with_shared_oauth_keys()
    user_id = None
    if q.get("token"):
        try:
            user_id = tokens.decode_access_token(ctx.cur, q["token"], project["id"])["sub"]
        except errors.KnownError as exc:
            if exc.code == "INVALID_PROJECT_FOR_ACCESS_TOKEN":
                raise errors.StatusError(403, "The access token is not valid for this project") from None
            raise
    json_mode = "json" in (q.get("stack_response_mode"), q.get("hexclave_response_mode"))
    verifier = oauth_client.new_code_verifier()
    provider_redirect_uri = "%s/api/v1/auth/oauth/callback/%s" % (ctx.api_base, provider_id)
    info = {
        "provider_id": provider_id, "publishable_client_key": q["client_secret"],
        "redirect_uri": q["redirect_uri"].split("#")[0], "scope": q["scope"], "state": q["state"],
        "code_challenge": q["code_challenge"], "code_challenge_method": q["code_challenge_method"],
        "response_type": q["response_type"], "inner_code_verifier": verifier,
        "provider_redirect_uri": provider_redirect_uri, "type": q["type"], "user_id": user_id,
        "provider_scope": q.get("provider_scope"),
        "error_redirect_url": q.get("error_redirect_uri") or q.get("error_redirect_url"),
        "after_callback_redirect_url": after, "response_mode": "json" if json_mode else "redirect",
        "expires_at": time.time() + OUTER_FLOW_SECONDS,
    }
    inner_state = codes.create(ctx.cur, project["id"], OUTER_PURPOSE, data=info, ttl_seconds=OUTER_FLOW_KEPT_SECONDS)
    location = oauth_client.authorization_url(ctx.state.cfg, ctx.api_base, provider_id, inner_state, verifier,
                                              provider_redirect_uri, q.get("provider_scope"))
    if json_mode:
        return {"location": location}
    response = redirect(location, 307)
    response.set_cookie(COOKIE_PREFIX + inner_state, "true", max_age=OUTER_FLOW_SECONDS, path="/",
                        httponly=True, samesite="Lax")
    return response


# ---------------------------------------------------------------------------- 2. callback

def error_redirect(config, error, info):
    """Upstream's redirectOrThrowError: to redirect_uri (or error_redirect_url) with the error."""
    for target in (info.get("redirect_uri"), info.get("error_redirect_url")):
        if target and redirect_ok(config, target):
            return redirect(oauth_client.with_params(target, {
                "error": "server_error", "error_description": error.message, "errorCode": error.code,
                "message": error.message, "details": json_bytes(error.details or {}).decode("utf-8")}), 307)
    raise error


def load_outer_flow(ctx, inner_state):
    """The authorize request behind an inner state (used once), and the project, or a 400."""
    project_id = codes.project_of(ctx.cur, OUTER_PURPOSE, inner_state)
    try:
        if project_id is None:
            raise errors.verification_code_not_found()
        row = codes.consume(ctx.cur, project_id, OUTER_PURPOSE, inner_state)
    except errors.KnownError:
        raise errors.StatusError(400, "Invalid OAuth state. Please try signing in again.") from None
    ctx.cur.execute("SELECT * FROM emulator.projects WHERE id = %s", (project_id,))
    ctx.project, ctx.project_id = ctx.cur.fetchone(), project_id
    return row["data"]


def callback(ctx, provider_id):
    args = dict(ctx.request.args.items())
    body = ctx.body() if ctx.method == "POST" else None
    params = dict(args, **(body if isinstance(body, dict) else {}))
    inner_state = str(params.get("state") or "")
    info = load_outer_flow(ctx, inner_state)
    cookie_name = COOKIE_PREFIX + inner_state
    if info.get("response_mode") != "json" and ctx.request.cookies.get(cookie_name) != "true":
        raise errors.StatusError(400, "Inner OAuth cookie not found. This is likely because you refreshed the page "
                                      "during the OAuth sign in process. Please try signing in again")
    ctx.cur.execute("SAVEPOINT oauth_callback")
    try:
        response = finish_sign_in(ctx, provider_id, info, params)
    except errors.KnownError as exc:
        ctx.cur.execute("ROLLBACK TO SAVEPOINT oauth_callback")  # the state stays used; nothing else is kept
        response = error_redirect(ctx.config, exc, info)
    if info.get("response_mode") != "json":
        response.delete_cookie(cookie_name, path="/")
    return response


routes.get("/auth/oauth/callback/<provider_id>", access=None)(callback)
routes.post("/auth/oauth/callback/<provider_id>", access=None)(callback)


def finish_sign_in(ctx, provider_id, info, params):
    if info["expires_at"] < time.time():
        raise errors.outer_oauth_timeout()
    if info["provider_id"] != provider_id or oauth_accounts.provider_config(ctx.config, provider_id) is None:
        raise errors.oauth_provider_not_found_or_not_enabled()
    check_client_secret(ctx.cur, ctx.project, info["publishable_client_key"])
    cfg = ctx.state.cfg
    if params.get("error"):
        if params["error"] in ("access_denied", "consent_required"):
            raise errors.oauth_provider_access_denied()
        raise errors.StatusError(400, "The OAuth provider answered with error %s: %s. Please try signing in again."
                                 % (params["error"], params.get("error_description") or "no description"))
    if not params.get("code"):
        raise errors.StatusError(400, "The OAuth provider sent no code to the callback. Please try signing in again.")
    try:
        provider_tokens = oauth_client.exchange_code(cfg, provider_id, str(params["code"]),
                                                     info["inner_code_verifier"], info["provider_redirect_uri"])
        user_info = oauth_client.user_info(cfg, provider_tokens["access_token"])
    except oauth_client.ProviderError as exc:
        if exc.code == "invalid_grant":
            raise errors.StatusError(400, "Inner OAuth callback failed due to invalid grant. Please try again.") \
                from None
        if exc.code in ("access_denied", "consent_required"):
            raise errors.oauth_provider_access_denied() from None
        raise errors.StatusError(502, "The mock OAuth provider answered %s (%s); check the guest journal"
                                 % (exc.code, exc.description)) from None
    scopes = oauth_client.scopes_of(oauth_client.BASE_SCOPE + " " + (info.get("provider_scope") or ""))
    user_id, account_id, new_user = link_or_sign_in(ctx, provider_id, info, user_info)
    connected_accounts.store_tokens(ctx.cur, ctx.project_id, account_id, provider_tokens, scopes)
    return issue_authorization_code(ctx, info, user_id, new_user)


def link_or_sign_in(ctx, provider_id, info, user_info):
    """(user id, OAuth account id, is a new user) for the provider's user, as upstream decides."""
    cur, project_id = ctx.cur, ctx.project_id
    account_id, email = user_info["account_id"], user_info["email"]
    existing = oauth_accounts.find_for_sign_in(cur, project_id, provider_id, account_id)
    if info["type"] == "link":
        user_id = info.get("user_id")
        if not user_id or users.load_row(cur, project_id, user_id) is None:
            raise errors.user_not_found()
        if existing and str(existing["user_id"]) != str(user_id):
            raise errors.oauth_connection_already_connected_to_another_user()
        row = existing or oauth_accounts.insert(cur, project_id, user_id, provider_id, account_id, email)
        return str(user_id), row["id"], False
    if existing:
        return str(existing["user_id"]), existing["id"], False
    linked_user, email_auth = merge_by_email(ctx, email, user_info["email_verified"])
    if linked_user:
        row = oauth_accounts.insert(cur, project_id, linked_user, provider_id, account_id, email)
        return linked_user, row["id"], False
    user_id = sign_up(ctx, info, user_info, email_auth)
    row = oauth_accounts.insert(cur, project_id, user_id, provider_id, account_id, email)
    return user_id, row["id"], True


def merge_by_email(ctx, email, email_verified):
    """(user to link to or None, whether the new user's email may sign in): upstream's
    handleOAuthEmailMergeStrategy."""
    if not email:
        return None, False
    ctx.cur.execute("SELECT user_id, is_verified FROM emulator.contact_channels WHERE project_id = %s "
                    "AND type = 'email' AND lower(value) = lower(%s) AND used_for_auth", (ctx.project_id, email))
    channel = ctx.cur.fetchone()
    if channel is None:
        return None, True
    strategy = ctx.config.get("oauth_account_merge_strategy", "link_method")
    if strategy == "allow_duplicates":
        return None, False
    if strategy == "link_method":
        if not channel["is_verified"]:
            raise errors.contact_channel_already_used_for_auth(email, "email", True)
        if email_verified:
            return str(channel["user_id"]), True
    raise errors.contact_channel_already_used_for_auth(email, "email")


def sign_up(ctx, info, user_info, email_auth):
    """A new user for the provider's user, or the anonymous user who started the flow, upgraded."""
    if not ctx.config.get("sign_up_enabled", True):
        raise errors.sign_up_not_enabled()
    fields = {"primary_email": user_info["email"], "primary_email_verified": bool(user_info["email_verified"]),
              "primary_email_auth_enabled": email_auth}
    for name in ("display_name", "profile_image_url"):
        if user_info.get(name):
            fields[name] = user_info[name]
    if fields["primary_email"] is None:
        del fields["primary_email"], fields["primary_email_verified"], fields["primary_email_auth_enabled"]
    current = users.load_row(ctx.cur, ctx.project_id, info["user_id"]) if info.get("user_id") else None
    if current is not None and current["is_anonymous"]:
        users.update(ctx.cur, ctx.project_id, str(current["id"]), dict(fields, is_anonymous=False))
        return str(current["id"])
    return users.create(ctx.cur, ctx.project_id, fields)


def issue_authorization_code(ctx, info, user_id, new_user):
    """The outer flow's answer: redirect_uri?code=...&state=... (oauth2-server's authorize)."""
    scopes = info["scope"].split()
    if not scopes or any(s not in ENABLED_SCOPES for s in scopes):
        raise errors.StatusError(400, "Invalid scope requested. Please check the scopes you are requesting.")
    if info["response_type"] != "code":
        raise errors.StatusError(400, "Unsupported response type: `response_type` is not supported")
    if info["code_challenge_method"] not in ("S256", "plain"):
        raise errors.StatusError(400, "Invalid parameter: `code_challenge_method`")
    check_redirect(ctx.config, info["redirect_uri"])
    code = codes.create(ctx.cur, ctx.project_id, CODE_PURPOSE, user_id=user_id, ttl_seconds=AUTHORIZATION_CODE_SECONDS,
                        data={"redirect_uri": info["redirect_uri"], "code_challenge": info["code_challenge"],
                              "code_challenge_method": info["code_challenge_method"], "new_user": new_user,
                              "after_callback_redirect_url": info.get("after_callback_redirect_url")})
    return redirect(oauth_client.with_params(info["redirect_uri"], {"code": code, "state": info["state"]}), 303)


# ---------------------------------------------------------------------------- 3. token

def token_error(code, description):
    return Response(json_bytes({"error": code, "error_description": description}), status=400,
                    content_type="application/json; charset=utf-8",
                    headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")])


def authorization_code_grant(ctx, form):
    """grant_type=authorization_code of POST /auth/oauth/token (the client is checked already)."""
    from .sessions import issue_tokens  # sessions dispatches this grant here

    code = form.get("code")
    if not code:
        return token_error("invalid_request", "Missing parameter: `code`")
    try:
        row = codes.consume(ctx.cur, ctx.project_id, CODE_PURPOSE, code)
    except errors.KnownError:
        raise errors.invalid_authorization_code() from None
    data = row["data"]
    if row["user_id"] is None or users.load_row(ctx.cur, ctx.project_id, str(row["user_id"])) is None:
        raise errors.invalid_authorization_code()
    redirect_uri = form.get("redirect_uri")
    if data["redirect_uri"] and redirect_uri != data["redirect_uri"]:
        if codes.parse_url(redirect_uri) is None:
            return token_error("invalid_request", "Invalid request: `redirect_uri` is not a valid URI")
        raise errors.StatusError(400, "Invalid redirect URI. Your redirect URI must be the same as the one used to "
                                      "get the authorization code.")
    if data.get("code_challenge"):
        verifier = form.get("code_verifier")
        method = data["code_challenge_method"]
        if not verifier or not oauth_client.pkce_matches(verifier, data["code_challenge"], method):
            raise errors.invalid_authorization_code()
    out = issue_tokens(ctx, str(row["user_id"]))
    after = data.get("after_callback_redirect_url")
    body = {"access_token": out["access_token"], "token_type": "Bearer",
            "expires_in": tokens.ACCESS_TOKEN_SECONDS - 1, "refresh_token": out["refresh_token"],
            "scope": " ".join(ENABLED_SCOPES), "newUser": bool(data.get("new_user")),
            "is_new_user": bool(data.get("new_user")), "afterCallbackRedirectUrl": after,
            "after_callback_redirect_url": after}
    return json_response(body, headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")])

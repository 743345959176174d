"""Connected accounts: a user's OAuth accounts that allow it, and the provider access tokens
an app asks for (stack-shared's interface/crud/connected-accounts.js).

The tokens come from the sign-in or link that connected the account (stored by oauth.py):
an access token still valid for five minutes and still accepted by the provider is handed
out, else a refresh token gets a new one from the provider (the mock OAuth provider: see
oauth_client.py). Upstream refuses access tokens of providers on shared keys unless
STACK_ALLOW_SHARED_OAUTH_ACCESS_TOKENS=true, which its emulator sets: so does this one.
"""

import uuid

from . import errors, oauth_client, users
from .inputs import check, current_user, params, read_body, user_field
from .oauth_accounts import provider_config
from .routing import CLIENT_UP, Routes

routes = Routes()

VALID_FOR_AT_LEAST_SECONDS = 5 * 60


# ---------------------------------------------------------------------------- token storage

def store_tokens(cur, project_id, oauth_account_id, tokens, scopes):
    """Keep a provider token set (oauth_client.token_set) for an account."""
    if tokens.get("refresh_token"):
        cur.execute("INSERT INTO emulator.oauth_tokens (id, project_id, oauth_account_id, kind, token, scopes) "
                    "VALUES (%s, %s, %s, 'refresh', %s, %s)",
                    (uuid.uuid4(), project_id, oauth_account_id, tokens["refresh_token"], list(scopes)))
    cur.execute("INSERT INTO emulator.oauth_tokens (id, project_id, oauth_account_id, kind, token, scopes, "
                "expires_at) VALUES (%s, %s, %s, 'access', %s, %s, to_timestamp(%s))",
                (uuid.uuid4(), project_id, oauth_account_id, tokens["access_token"], list(scopes),
                 tokens["expires_at"]))


def _invalidate(cur, token_id):
    cur.execute("UPDATE emulator.oauth_tokens SET is_valid = false WHERE id = %s", (token_id,))


def retrieve_or_refresh(cfg, cur, project_id, provider_id, account_ids, scope):
    """{"access_token"} for one of the accounts, as upstream's retrieveOrRefreshAccessToken."""
    wanted = oauth_client.scopes_of(scope)
    cur.execute("SELECT * FROM emulator.oauth_tokens WHERE project_id = %s AND oauth_account_id = ANY(%s) "
                "AND kind = 'access' AND is_valid AND scopes @> %s "
                "AND expires_at > clock_timestamp() + make_interval(secs => %s) ORDER BY created_at DESC",
                (project_id, list(account_ids), wanted, VALID_FOR_AT_LEAST_SECONDS))
    for token in cur.fetchall():
        if oauth_client.access_token_valid(cfg, token["token"]):
            return {"access_token": token["token"]}
        _invalidate(cur, token["id"])
    cur.execute("SELECT * FROM emulator.oauth_tokens WHERE project_id = %s AND oauth_account_id = ANY(%s) "
                "AND kind = 'refresh' AND is_valid AND scopes @> %s ORDER BY created_at DESC",
                (project_id, list(account_ids), wanted))
    for token in cur.fetchall():
        try:
            fresh = oauth_client.refresh(cfg, provider_id, token["token"], scope)
        except oauth_client.ProviderError:
            _invalidate(cur, token["id"])  # revoked or unknown to the provider (it keeps them in memory)
            continue
        if fresh["refresh_token"] and fresh["refresh_token"] != token["token"]:
            _invalidate(cur, token["id"])
        else:
            fresh = dict(fresh, refresh_token=None)
        store_tokens(cur, project_id, token["oauth_account_id"], fresh, token["scopes"])
        return {"access_token": fresh["access_token"]}
    raise errors.oauth_connection_does_not_have_required_scope()


# ---------------------------------------------------------------------------- routes

def _user_param(ctx, user_id, **more):
    p = params(ctx, user_id=user_id, **more)
    return p, user_field(ctx, p, "user_id", True)


def connection_json(row):
    return {"user_id": str(row["user_id"]), "provider": row["provider_config_id"],
            "provider_account_id": row["provider_account_id"]}


@routes.get("/connected-accounts/<user_id>", access=CLIENT_UP)
def list_connected(ctx, user_id):
    p, user_id = _user_param(ctx, user_id)
    check(ctx, p)
    if not ctx.is_server and user_id != current_user(ctx):
        raise errors.StatusError(403, "Client can only list connected accounts for their own user.")
    users.load(ctx.cur, ctx.project_id, user_id)
    ctx.cur.execute("SELECT * FROM emulator.oauth_accounts WHERE project_id = %s AND user_id = %s "
                    "AND allow_connected_accounts ORDER BY created_at, id", (ctx.project_id, user_id))
    return {"items": [connection_json(r) for r in ctx.cur.fetchall()], "is_paginated": False}


def _access_token(ctx, user_id, provider_id, provider_account_id=None):
    if not ctx.is_server and user_id != ctx.user_id:
        raise errors.StatusError(403, "Client can only access its own connected accounts")
    if provider_config(ctx.config, provider_id) is None:
        raise errors.oauth_provider_not_found_or_not_enabled()
    user = users.load(ctx.cur, ctx.project_id, user_id)
    linked = [p for p in user["oauth_providers"] if p["id"] == provider_id
              and (provider_account_id is None or p["account_id"] == provider_account_id)]
    if not linked:
        raise errors.oauth_connection_not_connected_to_user()
    sql = ("SELECT id FROM emulator.oauth_accounts WHERE project_id = %s AND user_id = %s "
           "AND provider_config_id = %s")
    args = [ctx.project_id, user_id, provider_id]
    if provider_account_id is not None:
        sql += " AND provider_account_id = %s AND allow_connected_accounts"
        args.append(provider_account_id)
    ctx.cur.execute(sql, args)
    account_ids = [r["id"] for r in ctx.cur.fetchall()]
    if not account_ids:
        raise errors.oauth_connection_not_connected_to_user()
    scope = ctx.fields().data.get("scope")
    return 201, retrieve_or_refresh(ctx.state.cfg, ctx.cur, ctx.project_id, provider_id, account_ids, scope)


def _scope_body(ctx):
    return read_body(ctx, {"scope": "string"})[0]


@routes.post("/connected-accounts/<user_id>/<provider_id>/access-token", access=CLIENT_UP)
def provider_access_token(ctx, user_id, provider_id):
    """The legacy route: any of the user's accounts of this provider."""
    p, user_id = _user_param(ctx, user_id, provider_id=provider_id)
    p.string("provider_id", required=True)
    check(ctx, p, _scope_body(ctx))
    return _access_token(ctx, user_id, provider_id)


@routes.post("/connected-accounts/<user_id>/<provider_id>/<provider_account_id>/access-token", access=CLIENT_UP)
def account_access_token(ctx, user_id, provider_id, provider_account_id):
    p, user_id = _user_param(ctx, user_id, provider_id=provider_id, provider_account_id=provider_account_id)
    check(ctx, p, _scope_body(ctx))
    return _access_token(ctx, user_id, provider_id, provider_account_id)


@routes.post("/auth/oauth/connected-accounts/<provider_id>/access-token", access=CLIENT_UP)
def deprecated_access_token(ctx, provider_id):
    """Upstream's deprecated route: the signed-in user's token (it forwards to .../me/...)."""
    check(ctx, _scope_body(ctx))
    return _access_token(ctx, ctx.resolve_user_id("me"), provider_id)

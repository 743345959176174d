"""OAuth accounts: the provider accounts (github, google, ...) linked to users, and the
/oauth-providers routes of stack-shared's interface/crud/oauth-providers.js.

An account with allow_sign_in signs its user in; one with allow_connected_accounts is a
connected account (connected_accounts.py). A user's read shape lists every account of it as
oauth_providers: [{id: provider config id, account_id, email}]. The route's `provider_id` is
the account's own id (a UUID), as upstream's.
"""

import uuid

from . import errors
from .inputs import check, current_user, opt, params, query_fields, read_body, user_field, uuid_field
from .permissions import ensure_user
from .routing import CLIENT_UP, SERVER_UP, Routes
from .validate import schema_error

routes = Routes()

# stack-shared's allProviders: the provider types a read shape's `type` may name.
PROVIDER_TYPES = ("google", "github", "microsoft", "spotify", "facebook", "discord", "gitlab", "bitbucket",
                  "linkedin", "apple", "x", "twitch")


# ---------------------------------------------------------------------------- the project's providers

def config_id_of(provider):
    """A provider entry's config id: its provider_config_id, or its provider type (its id)."""
    return provider.get("provider_config_id") or provider.get("id")


def provider_config(config, provider_config_id):
    """The project's enabled provider with this config id, or None. Entries are
    {id: provider type (github, ...), type: shared|standard, provider_config_id?, ...}."""
    for provider in config.get("oauth_providers") or []:
        if isinstance(provider, dict) and config_id_of(provider) == provider_config_id \
                and provider.get("enabled", True):
            return provider
    return None


def is_shared(provider):
    return provider.get("type", "shared") == "shared"


def provider_type(config, provider_config_id):
    """The provider type of a config id (upstream's resolveProviderType), or None."""
    provider = provider_config(config, provider_config_id)
    kind = provider["id"] if provider else provider_config_id
    return kind if kind in PROVIDER_TYPES else None


# ---------------------------------------------------------------------------- storage

def providers_of_user(cur, user_id):
    """The user read shape's oauth_providers."""
    cur.execute("SELECT provider_config_id, provider_account_id, email FROM emulator.oauth_accounts "
                "WHERE user_id = %s ORDER BY created_at, id", (user_id,))
    return [{"id": r["provider_config_id"], "account_id": r["provider_account_id"], "email": r["email"]}
            for r in cur.fetchall()]


def find_for_sign_in(cur, project_id, provider_id, account_id):
    """The account that signs in with this provider account (upstream's findExistingOAuthAccount)."""
    cur.execute("SELECT * FROM emulator.oauth_accounts WHERE project_id = %s AND provider_config_id = %s "
                "AND provider_account_id = %s AND allow_sign_in ORDER BY created_at LIMIT 1",
                (project_id, provider_id, account_id))
    return cur.fetchone()


def find_of_user(cur, project_id, user_id, provider_id, account_id):
    cur.execute("SELECT * FROM emulator.oauth_accounts WHERE project_id = %s AND user_id = %s "
                "AND provider_config_id = %s AND provider_account_id = %s",
                (project_id, user_id, provider_id, account_id))
    return cur.fetchone()


def insert(cur, project_id, user_id, provider_id, account_id, email, allow_sign_in=True,
           allow_connected_accounts=True):
    """A new account of the user (or the one it has already for this provider account)."""
    cur.execute("INSERT INTO emulator.oauth_accounts (id, project_id, user_id, provider_config_id, "
                "provider_account_id, email, allow_sign_in, allow_connected_accounts) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (project_id, provider_config_id, user_id, provider_account_id) DO NOTHING RETURNING *",
                (uuid.uuid4(), project_id, user_id, provider_id, account_id, email, allow_sign_in,
                 allow_connected_accounts))
    return cur.fetchone() or find_of_user(cur, project_id, user_id, provider_id, account_id)


def load(cur, project_id, user_id, account_id):
    """An account of the user, or upstream's 404."""
    cur.execute("SELECT * FROM emulator.oauth_accounts WHERE project_id = %s AND user_id = %s AND id = %s",
                (project_id, user_id, account_id))
    row = cur.fetchone()
    if row is None:
        raise errors.StatusError(404, "OAuth provider %s for user %s not found" % (account_id, user_id))
    return row


def account_json(row, config, server):
    kind = provider_type(config, row["provider_config_id"])
    out = {"user_id": str(row["user_id"]), "id": str(row["id"]), "provider_config_id": row["provider_config_id"],
           "type": kind, "allow_sign_in": bool(row["allow_sign_in"]),
           "allow_connected_accounts": bool(row["allow_connected_accounts"])}
    if row["email"]:
        out["email"] = row["email"]
    if server:
        out["account_id"] = row["provider_account_id"]
    return out


def check_input(cur, project_id, user_id, provider_config_id, account_id, allow_sign_in, exclude=None):
    """upstream's checkInputValidity for a new or changed account."""
    def others(where, args):
        cur.execute("SELECT 1 FROM emulator.oauth_accounts WHERE project_id = %%s AND %s "
                    "AND id IS DISTINCT FROM %%s LIMIT 1" % where, [project_id] + args + [exclude])
        return cur.fetchone() is not None

    if allow_sign_in and others("provider_config_id = %s AND user_id = %s AND allow_sign_in",
                                [provider_config_id, user_id]):
        raise errors.StatusError(400, "The same provider type with sign-in enabled already exists for this user.")
    if account_id is not None and others("provider_config_id = %s AND user_id = %s AND provider_account_id = %s",
                                         [provider_config_id, user_id, account_id]):
        raise errors.StatusError(400, "The same provider type with the same account ID already exists for this "
                                      "user.")
    if allow_sign_in and account_id is not None and others("provider_account_id = %s AND allow_sign_in",
                                                           [account_id]):
        raise errors.oauth_provider_account_id_already_used_for_sign_in()


def insert_for_new_user(ctx, user_id, providers):
    """POST /users' oauth_providers: [{id: provider config id, account_id, email?}], each an
    account that signs in and connects, as upstream's user creation makes them."""
    problems = []
    if not isinstance(providers, list):
        problems.append("body.oauth_providers must be a `array` type")
        providers = []
    for i, p in enumerate(providers):
        where = "body.oauth_providers[%d]" % i
        if not isinstance(p, dict):
            problems.append("%s must be a `object` type" % where)
            continue
        for name in ("id", "account_id"):
            if name not in p:
                problems.append("%s.%s must be defined" % (where, name))
            elif not isinstance(p[name], str):
                problems.append("%s.%s must be a `string` type" % (where, name))
        if p.get("email") is not None and not isinstance(p["email"], str):
            problems.append("%s.email must be a `string` type" % where)
    if problems:
        raise schema_error(ctx.method, ctx.path, problems)
    for p in providers:
        if provider_config(ctx.config, p["id"]) is None:
            raise errors.StatusError(400, "OAuth provider %s not found" % p["id"])
        insert(ctx.cur, ctx.project_id, user_id, p["id"], p["account_id"], p.get("email"))


# ---------------------------------------------------------------------------- routes

def _own_user_only(ctx, user_id, what):
    if not ctx.is_server and user_id != current_user(ctx):
        raise errors.StatusError(403, "Client can only %s OAuth providers for their own user." % what)


def _item_params(ctx, user_id, provider_id):
    p = params(ctx, user_id=user_id, provider_id=provider_id)
    user_id, provider_id = user_field(ctx, p, "user_id", True), uuid_field(p, "provider_id", True)
    return p, user_id, provider_id


@routes.get("/oauth-providers", access=CLIENT_UP)
def list_accounts(ctx):
    q = query_fields(ctx, ("user_id",))
    user_id = opt(user_field(ctx, q, "user_id"))
    check(ctx, q)
    _own_user_only(ctx, user_id, "list")
    sql, args = "SELECT * FROM emulator.oauth_accounts WHERE project_id = %s", [ctx.project_id]
    if user_id:
        ensure_user(ctx.cur, ctx.project_id, user_id)
        sql += " AND user_id = %s"
        args.append(user_id)
    ctx.cur.execute(sql + " ORDER BY created_at, id", args)
    items = [account_json(r, ctx.config, ctx.is_server) for r in ctx.cur.fetchall()]
    return {"items": [i for i in items if i["type"]], "is_paginated": False}


@routes.post("/oauth-providers", access=SERVER_UP)
def create_account(ctx):
    f, values = read_body(ctx, {
        "user_id": "user", "provider_config_id": "string", "email": "string", "account_id": "string",
        "allow_sign_in": lambda ctx, f, name, required: f.boolean(name, required=required),
        "allow_connected_accounts": lambda ctx, f, name, required: f.boolean(name, required=required),
    }, required=("user_id", "provider_config_id", "account_id", "allow_sign_in", "allow_connected_accounts"))
    check(ctx, f)
    provider_id = values["provider_config_id"]
    if provider_config(ctx.config, provider_id) is None:
        raise errors.StatusError(404, "OAuth provider %s not found or not configured" % provider_id)
    ensure_user(ctx.cur, ctx.project_id, values["user_id"])
    check_input(ctx.cur, ctx.project_id, values["user_id"], provider_id, values["account_id"],
                values["allow_sign_in"])
    row = insert(ctx.cur, ctx.project_id, values["user_id"], provider_id, values["account_id"],
                 values.get("email"), values["allow_sign_in"], values["allow_connected_accounts"])
    return 201, account_json(row, ctx.config, True)


@routes.get("/oauth-providers/<user_id>/<provider_id>", access=CLIENT_UP)
def get_account(ctx, user_id, provider_id):
    p, user_id, provider_id = _item_params(ctx, user_id, provider_id)
    check(ctx, p)
    _own_user_only(ctx, user_id, "read")
    ensure_user(ctx.cur, ctx.project_id, user_id)
    out = account_json(load(ctx.cur, ctx.project_id, user_id, provider_id), ctx.config, ctx.is_server)
    if not out["type"]:
        raise errors.StatusError(404, "OAuth provider %s not found or not configured" % out["provider_config_id"])
    return out


@routes.patch("/oauth-providers/<user_id>/<provider_id>", access=CLIENT_UP)
def update_account(ctx, user_id, provider_id):
    p, user_id, provider_id = _item_params(ctx, user_id, provider_id)
    spec = {"allow_sign_in": lambda ctx, f, name, required: f.boolean(name),
            "allow_connected_accounts": lambda ctx, f, name, required: f.boolean(name)}
    if ctx.is_server:
        spec.update({"email": "string", "account_id": "string"})
    f, values = read_body(ctx, spec)
    check(ctx, p, f)
    _own_user_only(ctx, user_id, "update")
    ensure_user(ctx.cur, ctx.project_id, user_id)
    row = load(ctx.cur, ctx.project_id, user_id, provider_id)
    check_input(ctx.cur, ctx.project_id, user_id, row["provider_config_id"], values.get("account_id"),
                values.get("allow_sign_in"), exclude=row["id"])
    columns = {"provider_account_id" if k == "account_id" else k: v for k, v in values.items()}
    if columns:
        ctx.cur.execute("UPDATE emulator.oauth_accounts SET %s WHERE id = %%s RETURNING *"
                        % ", ".join("%s = %%s" % c for c in columns), list(columns.values()) + [row["id"]])
        row = ctx.cur.fetchone()
    out = account_json(row, ctx.config, ctx.is_server)
    if not out["type"]:
        raise errors.StatusError(404, "OAuth provider %s not found or not configured" % out["provider_config_id"])
    return out


@routes.delete("/oauth-providers/<user_id>/<provider_id>", access=CLIENT_UP)
def delete_account(ctx, user_id, provider_id):
    p, user_id, provider_id = _item_params(ctx, user_id, provider_id)
    check(ctx, p)
    _own_user_only(ctx, user_id, "delete")
    ensure_user(ctx.cur, ctx.project_id, user_id)
    row = load(ctx.cur, ctx.project_id, user_id, provider_id)
    ctx.cur.execute("DELETE FROM emulator.oauth_accounts WHERE id = %s", (row["id"],))
    return {"success": True}

"""Password sign-up, sign-in, update, set and reset."""

from . import codes, emails, errors, passwords, tokens, users
from .anonymous import signed_in_anonymous_user
from .routing import CLIENT_UP, Routes
from .sessions import issue_tokens

routes = Routes()


def _require_password_auth(ctx):
    if not ctx.config.get("credential_enabled", True):
        raise errors.password_authentication_not_enabled()


def _auth_user_by_email(ctx, email):
    """The user owning the email channel used for auth (primary or not), as upstream looks it up."""
    ctx.cur.execute(users.USER_SELECT + " WHERE u.project_id = %s AND u.id = (SELECT a.user_id FROM "
                    "emulator.contact_channels a WHERE a.project_id = %s AND a.type = 'email' AND "
                    "lower(a.value) = lower(%s) AND a.used_for_auth LIMIT 1)",
                    (ctx.project_id, ctx.project_id, email))
    return ctx.cur.fetchone()


@routes.post("/auth/password/sign-up", access=CLIENT_UP)
def sign_up(ctx):
    f = ctx.fields()
    email = f.email("email", required=True)
    password = f.string("password", required=True)
    callback = f.url("verification_callback_url", nullable=True)
    f.check()
    _require_password_auth(ctx)
    if not ctx.config.get("sign_up_enabled", True) and not ctx.is_server:
        raise errors.sign_up_not_enabled()
    passwords.check_rules(password)
    fields = {"primary_email": email, "password": password, "primary_email_auth_enabled": True}
    user_id = signed_in_anonymous_user(ctx)
    if user_id is None:
        user_id = users.create(ctx.cur, ctx.project_id, fields)
    else:  # upstream upgrades the anonymous user of the session: same id, same data
        users.update(ctx.cur, ctx.project_id, user_id, dict(fields, is_anonymous=False))
    ctx.cur.execute("SELECT id FROM emulator.contact_channels WHERE user_id = %s AND is_primary", (user_id,))
    channel_id = ctx.cur.fetchone()["id"]
    emails.send_verification(ctx, user_id, channel_id, email, callback if isinstance(callback, str) else None)
    out = issue_tokens(ctx, user_id)
    return {"access_token": out["access_token"], "refresh_token": out["refresh_token"], "user_id": user_id}


@routes.post("/auth/password/sign-in", access=CLIENT_UP)
def sign_in(ctx):
    f = ctx.fields()
    email = f.email("email", required=True)
    password = f.string("password", required=True)
    f.check()
    _require_password_auth(ctx)
    row = _auth_user_by_email(ctx, email)
    if row is None or not passwords.check_password(password, row["password_hash"]):
        raise errors.email_password_mismatch()
    out = issue_tokens(ctx, str(row["id"]))
    return {"access_token": out["access_token"], "refresh_token": out["refresh_token"],
            "user_id": str(row["id"])}


def _signed_in_row(ctx):
    row = users.load_row(ctx.cur, ctx.project_id, ctx.require_user())
    if row is None:
        raise errors.user_not_found()
    return row


def _store_password(ctx, user_id, password):
    """Set the signed-in user's password; its other sessions end, this one stays."""
    passwords.check_rules(password)
    ctx.cur.execute("UPDATE emulator.users SET password_hash = %s WHERE id = %s",
                    (passwords.hash_password(password), user_id))
    tokens.revoke_sessions(ctx.cur, ctx.project_id, user_id, keep=ctx.session_id)
    return {"success": True}


@routes.post("/auth/password/update", access=CLIENT_UP)
def update_password(ctx):
    f = ctx.fields()
    old = f.string("old_password", required=True)
    new = f.string("new_password", required=True)
    f.check()
    row = _signed_in_row(ctx)
    if row["password_hash"] is None:
        raise errors.user_does_not_have_password()
    if not passwords.check_password(old, row["password_hash"]):
        raise errors.password_confirmation_mismatch()
    return _store_password(ctx, row["id"], new)


@routes.post("/auth/password/set", access=CLIENT_UP)
def set_password(ctx):
    f = ctx.fields()
    new = f.string("password", required=True)
    f.check()
    row = _signed_in_row(ctx)
    if row["password_hash"] is not None:
        raise errors.StatusError(400, "User already has a password set.")
    return _store_password(ctx, row["id"], new)


@routes.post("/auth/password/send-reset-code", access=CLIENT_UP)
def send_reset_code(ctx):
    f = ctx.fields()
    email = f.email("email", required=True)
    callback = f.url("callback_url", required=True)
    f.check()
    _require_password_auth(ctx)
    row = _auth_user_by_email(ctx, email)
    if row is not None:  # upstream answers the same whether or not the account exists
        emails.send_password_reset(ctx, str(row["id"]), email, callback)
    return {"success": "maybe, only if user with e-mail exists"}


@routes.post("/auth/password/reset/check-code", access=CLIENT_UP)
def check_reset_code(ctx):
    f = ctx.fields()
    code = codes.code_field(f)
    f.check()
    codes.lookup(ctx.cur, ctx.project_id, emails.RESET_PURPOSE, code)
    return {"is_code_valid": True}


@routes.post("/auth/password/reset", access=CLIENT_UP)
def reset(ctx):
    f = ctx.fields()
    code = codes.code_field(f)
    password = f.string("password", required=True, max_len=passwords.MAX_LENGTH)
    f.check()
    row = codes.consume(ctx.cur, ctx.project_id, emails.RESET_PURPOSE, code)
    _require_password_auth(ctx)
    passwords.check_rules(password)
    ctx.cur.execute("UPDATE emulator.users SET password_hash = %s WHERE id = %s AND project_id = %s",
                    (passwords.hash_password(password), row["user_id"], ctx.project_id))
    tokens.revoke_sessions(ctx.cur, ctx.project_id, row["user_id"])  # whoever had the old one is out
    return {"success": True}

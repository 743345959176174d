"""One-time passwords and magic links: /auth/otp/send-sign-in-code, /auth/otp/sign-in[/check-code].

As upstream: one 45-character code is mailed twice, as a link (`<callback_url>?code=<code>`)
and as a one-time password, its first 6 characters in upper case. The send call answers with
the other 39 characters, the nonce; an app signs in with the typed password followed by the
nonce (codes are case-insensitive). Every try counts against all codes that share its nonce,
so guessing the 6 characters ends at VERIFICATION_CODE_MAX_ATTEMPTS_REACHED, and those
counts are kept even when the try fails.

An address without an account signs up (when the project allows sign-up), with its email
verified: reading the mail proved it. An existing account signs in if its email is verified;
it gets the OTP sign-in method on the way.
"""

import hashlib
import re

from werkzeug.wrappers import Response

from . import codes, emails, errors
from .inputs import check, read_body
from .routing import CLIENT_UP, Routes
from .validate import MISSING

routes = Routes()

PURPOSE = "otp_sign_in"
OTP_LENGTH = 6
# stack-shared's strictEmailSchema, which upstream's sign-in email goes through.
STRICT_EMAIL_RE = re.compile(r"^[^.]+(\.[^.]+)*@.*\.[^.][^.]+$")
STRICT_EMAIL_MAX = 256
BOT_CHALLENGE_PHASES = ("invisible", "visible")


def split_code(code):
    """(the one-time password as mailed, the nonce the send call returns) of a full code."""
    return code[:OTP_LENGTH].upper(), code[OTP_LENGTH:]


def nonce_hash(code):
    """What the codes sharing a nonce have in common: the hash of the code after its password."""
    return hashlib.sha256(code[OTP_LENGTH:].lower().encode("utf-8")).hexdigest()


def sign_in_email_problem(email):
    """Upstream's message for an address strictEmailSchema refuses that Fields.email let pass."""
    if len(email) > STRICT_EMAIL_MAX:
        return "body.email must be at most %d characters" % STRICT_EMAIL_MAX
    if not STRICT_EMAIL_RE.match(email):
        return 'body.email must match the following: "/%s/"' % STRICT_EMAIL_RE.pattern
    return None


def _email(ctx, f, name, required):
    value = f.email(name, required=required)
    problem = sign_in_email_problem(value) if isinstance(value, str) else None
    if problem:
        f.problems.append(problem)
        return MISSING
    return value


def _callback_url(ctx, f, name, required):
    return f.url(name, required=required)


SEND_BODY = {
    "email": _email,
    "callback_url": _callback_url,
    # Sent by the SDK's bot-challenge flow; the emulator challenges no one.
    "bot_challenge_token": "string",
    "bot_challenge_phase": lambda ctx, f, name, required: f.one_of(name, BOT_CHALLENGE_PHASES),
    "bot_challenge_unavailable": lambda ctx, f, name, required: f.one_of(name, ("true",)),
}


def user_for_email(ctx, email):
    """Upstream's ensureUserForEmailAllowsOtp: the id of the account the address signs in to
    (which gets the OTP method), None when it would sign up, or the error that stops both."""
    ctx.cur.execute("SELECT user_id, value, is_verified FROM emulator.contact_channels WHERE project_id = %s "
                    "AND type = 'email' AND lower(value) = lower(%s) AND used_for_auth LIMIT 1",
                    (ctx.project_id, email))
    channel = ctx.cur.fetchone()
    if channel is None:
        if not ctx.config.get("sign_up_enabled", True):
            raise errors.sign_up_not_enabled()
        return None
    if not channel["is_verified"]:
        # Someone signed up with this address and never proved it: a code must not take it over.
        raise errors.user_email_already_exists(channel["value"], would_work_if_email_was_verified=True)
    ctx.cur.execute("UPDATE emulator.users SET otp_auth_enabled = true WHERE id = %s", (channel["user_id"],))
    return str(channel["user_id"])


@routes.post("/auth/otp/send-sign-in-code", access=CLIENT_UP)
def send_sign_in_code(ctx):
    f, values = read_body(ctx, SEND_BODY, required=("email", "callback_url"))
    check(ctx, f)
    if not ctx.config.get("magic_link_enabled", True):
        raise errors.StatusError(403, "OTP sign-in is not enabled for this project. Turn on magic_link_enabled "
                                      "in the project's config (PATCH /internal/projects/current) to use it.")
    email, callback_url = values["email"], values["callback_url"]
    user_for_email(ctx, email)
    codes.check_redirect(ctx.config, callback_url)
    code = codes.generate()
    codes.create(ctx.cur, ctx.project_id, PURPOSE, data={"email": email, "nonce_hash": nonce_hash(code)}, code=code)
    otp, nonce = split_code(code)
    emails.send_sign_in_code(ctx, email, codes.link(callback_url, code), otp)
    return {"nonce": nonce}


def _use_code(ctx, consume):
    """The code's row, counting the try against every code with the same nonce; a refused
    code is answered without rolling the counts back."""
    f, values = read_body(ctx, {"code": lambda ctx, f, name, required: codes.code_field(f, name)},
                          required=("code",))
    check(ctx, f)
    code = values["code"].lower()
    # codes.lookup counts this very code; the others that share its nonce are counted here.
    ctx.cur.execute("UPDATE emulator.verification_codes SET attempts = attempts + 1 WHERE project_id = %s "
                    "AND purpose = %s AND data->>'nonce_hash' = %s AND code_hash <> %s",
                    (ctx.project_id, PURPOSE, nonce_hash(code), codes.hash_code(code)))
    try:
        return (codes.consume if consume else codes.lookup)(ctx.cur, ctx.project_id, PURPOSE, code)
    except errors.KnownError as exc:
        return Response(exc.body(), status=exc.status, headers=exc.headers())


@routes.post("/auth/otp/sign-in/check-code", access=CLIENT_UP)
def check_code(ctx):
    row = _use_code(ctx, consume=False)
    if isinstance(row, Response):
        return row
    return {"is_code_valid": True}


@routes.post("/auth/otp/sign-in", access=CLIENT_UP)
def sign_in(ctx):
    # Imported here: they load the database driver, which the host-side unit tests of this module lack.
    from . import users
    from .anonymous import signed_in_anonymous_user
    from .sessions import issue_tokens

    row = _use_code(ctx, consume=True)
    if isinstance(row, Response):
        return row
    email = row["data"]["email"]
    user_id = user_for_email(ctx, email)
    is_new_user = user_id is None
    if is_new_user:
        fields = {"primary_email": email, "primary_email_verified": True, "primary_email_auth_enabled": True,
                  "otp_auth_enabled": True}
        user_id = signed_in_anonymous_user(ctx)
        if user_id is None:
            user_id = users.create(ctx.cur, ctx.project_id, fields)
        else:  # as upstream, the anonymous user of the session becomes the new account
            users.update(ctx.cur, ctx.project_id, user_id, dict(fields, is_anonymous=False))
    out = issue_tokens(ctx, user_id)
    return {"refresh_token": out["refresh_token"], "access_token": out["access_token"],
            "is_new_user": is_new_user, "user_id": user_id}

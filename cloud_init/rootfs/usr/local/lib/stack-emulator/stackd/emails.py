"""The mails the backend sends, through real SMTP into the mail catcher.

Each carries a link built from the callback URL the app passed (as upstream does); without
one, the link points at the emulator's dashboard handler on the host port the user sees. A
callback URL the app passed must pass upstream's redirect check (codes.check_redirect), else
REDIRECT_URL_NOT_WHITELISTED and no mail.
"""

from html import escape

from . import codes, mail, mail_codes
from .config import log, short_error
from .routing import Routes

routes = Routes()

VERIFY_PURPOSE = "contact_channel_verification"
RESET_PURPOSE = "password_reset"


def default_callback(ctx, handler):
    return "http://localhost:%d/handler/%s" % (ctx.state.cfg.dashboard_host_port, handler)


def _send(ctx, to, subject, text, html, kind=None, code=None, link=None):
    """Send once the request's transaction has committed, so a mail never names a code that
    is not in the database yet (or was rolled back). kind (mail_codes.KINDS), code and link
    go into headers, for the mail catcher's out-of-band route and the console."""
    cfg = ctx.state.cfg
    headers = mail_codes.headers(kind, ctx.project_id, code, link) if kind else None

    def send():
        try:
            mail.send(cfg, to, subject, text, html, headers=headers)
        except Exception as exc:  # the mail catcher is local: log, never fail the API call
            log("could not send %r to the mail catcher: %s" % (subject, short_error(exc)))
    ctx.after_commit.append(send)


def _project_name(ctx):
    return ctx.project["display_name"] if ctx.project else "Stack"


def send_verification(ctx, user_id, channel_id, email, callback_url=None):
    """Mail a verification link for a contact channel."""
    if callback_url is not None:
        codes.check_redirect(ctx.config, callback_url)
    code = codes.create(ctx.cur, ctx.project_id, VERIFY_PURPOSE, user_id,
                        {"channel_id": str(channel_id), "email": email})
    url = codes.link(callback_url or default_callback(ctx, "email-verification"), code)
    name = _project_name(ctx)
    _send(ctx, email, "Verify your email at %s" % name,
          "Verify your email address for %s by opening this link:\n\n%s\n\nCode: %s\n" % (name, url, code),
          '<p>Verify your email address for %s.</p><p><a href="%s">Verify my email</a></p>' % (escape(name), escape(url)),
          kind="verification", code=code, link=url)
    return code


def send_password_reset(ctx, user_id, email, callback_url=None):
    if callback_url is not None:
        codes.check_redirect(ctx.config, callback_url)
    code = codes.create(ctx.cur, ctx.project_id, RESET_PURPOSE, user_id, {"email": email})
    url = codes.link(callback_url or default_callback(ctx, "password-reset"), code)
    name = _project_name(ctx)
    _send(ctx, email, "Reset your password at %s" % name,
          "Reset your password for %s by opening this link:\n\n%s\n\nCode: %s\n" % (name, url, code),
          '<p>Reset your password for %s.</p><p><a href="%s">Reset my password</a></p>' % (escape(name), escape(url)),
          kind="reset", code=code, link=url)
    return code


def send_sign_in_code(ctx, email, url, otp):
    """The one-time-password mail (upstream's magic_link template): the 6-character code to type
    and the magic link that signs in with one click. otp.py makes the code."""
    name = _project_name(ctx)
    _send(ctx, email, "Sign in to %s: Your code is %s" % (name, otp),
          "Sign in to %s.\n\nYour one-time password: %s\n\nOr open this link to sign in:\n\n%s\n\n"
          "If you were not expecting this email, you can safely ignore it.\n" % (name, otp, url),
          '<h3>Sign in to %s</h3><p>This is your one-time password for signing in:</p><p><b>%s</b></p>'
          '<p>Or you can click on <a href="%s">this link</a> to sign in</p>' % (escape(name), escape(otp), escape(url)),
          kind="otp", code=otp, link=url)

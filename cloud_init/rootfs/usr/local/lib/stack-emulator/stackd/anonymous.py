"""Anonymous users: sign-up without an email, later upgraded by a real sign-up."""

from . import users
from .routing import CLIENT_UP, Routes
from .sessions import issue_tokens

routes = Routes()


@routes.post("/auth/anonymous/sign-up", access=CLIENT_UP)
def sign_up(ctx):
    user_id = users.create(ctx.cur, ctx.project_id, {}, is_anonymous=True)
    out = issue_tokens(ctx, user_id)
    return {"access_token": out["access_token"], "refresh_token": out["refresh_token"], "user_id": user_id}


def signed_in_anonymous_user(ctx):
    """The id of the anonymous user whose token came with the request, or None."""
    if ctx.claims and ctx.claims.get("is_anonymous"):
        row = users.load_row(ctx.cur, ctx.project_id, ctx.claims["sub"])
        if row is not None and row["is_anonymous"]:
            return str(row["id"])
    return None

"""Reading a request's path, query and body the way upstream's yup schemas do, for the teams
and permissions routes: every problem of a request comes back in one SCHEMA_ERROR."""

import re

from . import errors
from .schema import SYSTEM_PERMISSIONS
from .validate import MISSING, Fields, schema_error

# yup's uuid() test, which upstream's params and queries go through.
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
                     r"|00000000-0000-0000-0000-000000000000", re.IGNORECASE)
ID_RE = re.compile(r"\$?[a-z0-9_:]+")
CUSTOM_ID_RE = re.compile(r"[a-z0-9_:]+")
ID_MESSAGE = 'Only lowercase letters, numbers, ":", "_" and optional "$" at the beginning are allowed'
CUSTOM_ID_MESSAGE = 'Only lowercase letters, numbers, ":", "_" are allowed'


def check(ctx, *parts):
    """SCHEMA_ERROR for every problem of the request's params, query and body together."""
    problems = [p for f in parts for p in f.problems]
    if problems:
        raise schema_error(ctx.method, ctx.path, problems)


def opt(value):
    return None if value is MISSING else value


def current_user(ctx):
    """The signed-in user's id, for checks upstream makes on `auth.user` with client access."""
    if not ctx.user_id:
        raise errors.cannot_get_own_user_without_user()
    return ctx.user_id


def uuid_field(f, name, required=False):
    value = f.string(name, required=required)
    if isinstance(value, str):
        if not UUID_RE.fullmatch(value):
            return f._bad(name, "must be a valid UUID")
        return value.lower()
    return value


def user_field(ctx, f, name, required=False):
    """A user id or `me` (the signed-in user, else CANNOT_GET_OWN_USER_WITHOUT_USER)."""
    if f.data.get(name) == "me":
        return ctx.resolve_user_id("me")
    return uuid_field(f, name, required)


def permission_id_field(f, name, required=False, custom=False):
    value = f.string(name, required=required)
    if isinstance(value, str):
        problem = permission_id_problem(value, custom)
        if problem:
            f.problems.append(problem)
            return MISSING
    return value


def permission_ids_field(f, name):
    value = f.data.get(name, MISSING)
    if value is MISSING:
        return MISSING
    if not isinstance(value, list):
        return f._bad(name, "must be a `array` type")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            f.problems.append("%s.%s[%d] must be a `string` type" % (f.where, name, i))
        elif permission_id_problem(item):
            f.problems.append(permission_id_problem(item))
    return value


def params(ctx, **values):
    return Fields(ctx, values, where="params")


def query_fields(ctx, allowed):
    f = Fields(ctx, dict(ctx.request.args.items()), where="query")
    unknown = [k for k in f.data if k not in allowed]
    if unknown:
        f.problems.append("query contains unknown properties: %s" % ", ".join(unknown))
    return f


# reader(ctx, fields, name, required) -> value or MISSING, for each kind of body field
READERS = {
    "string": lambda ctx, f, name, required: f.string(name, required=required),
    "json": lambda ctx, f, name, required: f.json(name),
    "user": user_field,
    "custom_id": lambda ctx, f, name, required: permission_id_field(f, name, required, custom=True),
    "ids": lambda ctx, f, name, required: permission_ids_field(f, name),
}


def read_body(ctx, spec, required=()):
    """(Fields, values) of a JSON body upstream declares as an object with spec's keys.

    spec maps each key to a kind of READERS, or to a reader of its own."""
    data = ctx.body()
    f = Fields(ctx, data)
    values = {}
    if not isinstance(data, dict):  # yup reports only that, and reads no field
        if data is None:
            f.problems.append("body must be defined")
        return f, values
    for name, kind in spec.items():
        value = (READERS[kind] if isinstance(kind, str) else kind)(ctx, f, name, name in required)
        if value is not MISSING:
            values[name] = value
    unknown = [k for k in f.data if k not in spec]
    if unknown:
        f.problems.append("body contains unknown properties: %s" % ", ".join(unknown))
    return f, values


def permission_id_problem(value, custom=False):
    """The message upstream's permission id schema gives for value, or None when it is valid."""
    if custom:
        return None if CUSTOM_ID_RE.fullmatch(value) else CUSTOM_ID_MESSAGE
    if not ID_RE.fullmatch(value):
        return ID_MESSAGE
    if value.startswith("$") and value not in SYSTEM_PERMISSIONS:
        return "Invalid system permission"
    return None

"""Request validation with upstream's SCHEMA_ERROR messages.

Upstream validates each request with yup and answers
  Request validation failed on POST /api/v1/...:
    - body.email must be defined
A Fields object collects every problem of one request, then raises them together.
"""

import re
import uuid

from . import codes, errors

EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
MISSING = object()


def schema_error(method, path, problems):
    lines = "\n".join("  - %s" % p for p in problems)
    return errors.schema_error("Request validation failed on %s %s:\n%s" % (method, path, lines))


class Fields:
    """Typed reads of one JSON object (the body or the query); problems are collected."""

    def __init__(self, ctx, data, where="body"):
        self.ctx = ctx
        self.data = data if isinstance(data, dict) else {}
        self.where = where
        self.problems = []
        if data is not None and not isinstance(data, dict):
            self.problems.append("%s must be a `object` type" % where)

    def has(self, name):
        return name in self.data

    def _get(self, name, required):
        value = self.data.get(name, MISSING)
        if value is MISSING and required:
            self.problems.append("%s.%s must be defined" % (self.where, name))
        return value

    def _bad(self, name, text):
        self.problems.append("%s.%s %s" % (self.where, name, text))
        return MISSING

    def string(self, name, required=False, nullable=False, max_len=None, min_len=None):
        value = self._get(name, required)
        if value is MISSING:
            return MISSING
        if value is None:
            return None if nullable else self._bad(name, "cannot be null")
        if not isinstance(value, str):
            return self._bad(name, "must be a `string` type")
        if max_len is not None and len(value) > max_len:
            return self._bad(name, "must be at most %d characters" % max_len)
        if min_len is not None and len(value) < min_len:
            return self._bad(name, "must be at least %d characters" % min_len)
        return value

    def url(self, name, required=False, nullable=False, max_len=None):
        """An absolute URL, checked as upstream's urlSchema (and a browser) reads it."""
        value = self.string(name, required=required, nullable=nullable, max_len=max_len)
        if isinstance(value, str):
            problem = codes.url_problem("%s.%s" % (self.where, name), value)
            if problem:
                self.problems.append(problem)
                return MISSING
        return value

    def email(self, name, required=False, nullable=False):
        value = self.string(name, required=required, nullable=nullable, max_len=320)
        if isinstance(value, str) and not EMAIL_RE.fullmatch(value):
            return self._bad(name, "must be a valid email address")
        return value

    def boolean(self, name, required=False, nullable=False):
        value = self._get(name, required)
        if value is MISSING or (value is None and nullable):
            return value
        if not isinstance(value, bool):
            return self._bad(name, "must be a `boolean` type")
        return value

    def integer(self, name, required=False, minimum=None, maximum=None):
        value = self._get(name, required)
        if value is MISSING:
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            return self._bad(name, "must be an integer")
        if minimum is not None and value < minimum:
            return self._bad(name, "must be greater than or equal to %s" % minimum)
        if maximum is not None and value > maximum:
            return self._bad(name, "must be less than or equal to %s" % maximum)
        return int(value)

    def json(self, name, nullable=True):
        """Any JSON value (metadata)."""
        value = self.data.get(name, MISSING)
        if value is None and not nullable:
            return self._bad(name, "cannot be null")
        return value

    def uuid(self, name, required=False, nullable=False):
        value = self.string(name, required=required, nullable=nullable)
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                return self._bad(name, "must be a valid UUID")
        return value

    def one_of(self, name, choices, required=False):
        value = self.string(name, required=required)
        if isinstance(value, str) and value not in choices:
            return self._bad(name, "must be one of the following values: %s" % ", ".join(choices))
        return value

    def check(self):
        """Raise SCHEMA_ERROR for every problem found so far."""
        if self.problems:
            raise schema_error(self.ctx.method, self.ctx.path, self.problems)


def parse_uuid(value):
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None

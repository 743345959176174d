"""Password hashing (scrypt, deliberately light for a throwaway emulator under TCG) and rules."""

import base64
import hashlib
import hmac
import os

from . import errors

MIN_LENGTH = 8
MAX_LENGTH = 70  # upstream's limit (bcrypt's)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password):
    salt = os.urandom(16)
    n, r, p = 4096, 8, 1
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return "scrypt$%d$%d$%d$%s$%s" % (n, r, p, _b64(salt), _b64(digest))


def check_password(password, stored):
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8"), salt=_unb64(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)
        return hmac.compare_digest(got, _unb64(digest))
    except (ValueError, TypeError):
        return False


def check_rules(password):
    """PASSWORD_TOO_SHORT / PASSWORD_TOO_LONG as upstream's getPasswordError."""
    if len(password) < MIN_LENGTH:
        raise errors.password_too_short(MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise errors.password_too_long(MAX_LENGTH)
    return password

"""Project API keys: read per request (a rotation applies at once) and set from the environment."""

import hmac
import re

from .config import PROJECT_ID, log

HEX64 = re.compile(r"[0-9A-Fa-f]{64}")

# Environment variable -> key kind (CONTRACT §4). Applied once per boot if 64 hex digits.
ENV_KEY_NAMES = {
    "STACK_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY": "publishable_client_key",
    "STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY": "publishable_client_key",
    "STACK_INTERNAL_PROJECT_SECRET_SERVER_KEY": "secret_server_key",
    "STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY": "secret_server_key",
    "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY": "super_secret_admin_key",
    "STACK_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY": "super_secret_admin_key",
    "CRON_SECRET": "cron_secret",
}


def keys_from_env(env):
    """64-hex key values found in env, by kind. Invalid or conflicting values are skipped."""
    found, bad = {}, set()
    for name, kind in ENV_KEY_NAMES.items():
        value = (env.get(name) or "").strip()
        if not value:
            continue
        if not HEX64.fullmatch(value):
            log("not applying %s from the environment: not 64 hex digits" % name)
            continue
        if kind in found and found[kind] != value:
            log("not applying %s from the environment: conflicts with an alias" % name)
            bad.add(kind)
        found[kind] = value
    return {k: v for k, v in found.items() if k not in bad}


def apply_env_keys(db, env):
    found = keys_from_env(env)
    if not found:
        return []

    def tx(cur):
        for kind, secret in found.items():
            cur.execute("UPDATE emulator.api_keys SET secret = %s, updated_at = now() "
                        "WHERE project_id = %s AND kind = %s", (secret, PROJECT_ID, kind))
    db.run(tx)
    return sorted(found)


def project_keys(cur, project_id):
    cur.execute("SELECT kind, secret FROM emulator.api_keys WHERE project_id = %s", (project_id,))
    return {row["kind"]: row["secret"] for row in cur.fetchall()}


def key_matches(expected, given):
    """Constant-time comparison; any text (a non-ASCII key simply does not match)."""
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.lower().encode("utf-8"), given.strip().lower().encode("utf-8"))

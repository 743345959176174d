"""Stack Auth's config format: overrides, and what each level may hold (pure functions).

Upstream keeps a project's config as overrides on levels (project, branch, environment);
each override is an object whose keys may be dotted paths ("auth.allowSignUp": false), and a
key replaces everything below it (stack-shared's config/format.js and config/schema.js):

  flatten(override)         {dotted leaf path: value}; None means "removed"
  apply(flat, override)     upstream's override rule on a flattened config
  problems(override, level) what a level may not hold (unknown keys, wrong types, keys that
                            belong to another level), in words that say what to change

config_mapping.py maps the rendered config onto the emulator's project config.
"""

import re

LEVELS = ("project", "branch", "environment")
PROVIDERS = ("google", "github", "microsoft", "spotify", "facebook", "discord", "gitlab", "bitbucket",
             "linkedin", "apple", "x", "twitch")
KEY_RE = re.compile(r"[a-zA-Z0-9_:$][a-zA-Z_:$0-9\-]*(?:\.[a-zA-Z0-9_:$][a-zA-Z_:$0-9\-]*)*")

BOOL, STR, NUM, TRUE, ANY = "boolean", "string", "number", "true", "any"

# Paths (with * for one record key and ** for anything below) and their value types,
# as stack-shared's config/schema.js declares them per level.
PROJECT_PATHS = {
    "project.requirePublishableClientKey": BOOL,
    "sourceOfTruth.**": ANY,
}
BRANCH_PATHS = {
    "rbac.permissions.*.description": STR,
    "rbac.permissions.*.scope": ("team", "project"),
    "rbac.permissions.*.containedPermissionIds.*": TRUE,
    "rbac.defaultPermissions.teamCreator.*": TRUE,
    "rbac.defaultPermissions.teamMember.*": TRUE,
    "rbac.defaultPermissions.signUp.*": TRUE,
    "teams.createPersonalTeamOnSignUp": BOOL,
    "teams.allowClientTeamCreation": BOOL,
    "users.allowClientUserDeletion": BOOL,
    "onboarding.requireEmailVerification": BOOL,
    "apiKeys.enabled.team": BOOL,
    "apiKeys.enabled.user": BOOL,
    "apps.installed.*.enabled": BOOL,
    "auth.allowSignUp": BOOL,
    "auth.password.allowSignIn": BOOL,
    "auth.otp.allowSignIn": BOOL,
    "auth.passkey.allowSignIn": BOOL,
    "auth.oauth.accountMergeStrategy": ("link_method", "raise_error", "allow_duplicates"),
    "auth.oauth.providers.*.type": PROVIDERS,
    "auth.oauth.providers.*.allowSignIn": BOOL,
    "auth.oauth.providers.*.allowConnectedAccounts": BOOL,
    "auth.signUpRules.**": ANY,
    "auth.signUpRulesDefaultAction": ("allow", "reject"),
    "emails.selectedThemeId": STR,
    "emails.themes.**": ANY,
    "emails.templates.**": ANY,
    "payments.blockNewPurchases": BOOL,
    "payments.autoPay.**": ANY,
    "payments.productLines.**": ANY,
    "payments.products.**": ANY,
    "payments.items.**": ANY,
    "dbSync.**": ANY,
    "dataVault.**": ANY,
}
# What only the environment level holds: per-deployment settings and secrets.
ENVIRONMENT_PATHS = {
    "auth.oauth.providers.*.isShared": BOOL,
    "auth.oauth.providers.*.clientId": STR,
    "auth.oauth.providers.*.clientSecret": STR,
    "auth.oauth.providers.*.facebookConfigId": STR,
    "auth.oauth.providers.*.microsoftTenantId": STR,
    "auth.oauth.providers.*.appleBundles.**": ANY,
    "emails.server.**": ANY,
    "domains.allowLocalhost": BOOL,
    "domains.trustedDomains.*.baseUrl": STR,
    "domains.trustedDomains.*.handlerPath": STR,
    "payments.testMode": BOOL,
    "analytics.**": ANY,
    "customDashboards.**": ANY,
}
LEVEL_PATHS = {
    "project": PROJECT_PATHS,
    "branch": BRANCH_PATHS,
    "environment": {**BRANCH_PATHS, **ENVIRONMENT_PATHS},
}


# ---------------------------------------------------------------------------- format

def depth(key):
    return key.count(".")


def flatten(config, prefix=""):
    """{dotted leaf path: value}. Empty objects and None stay leaves; dotted keys are split."""
    out = {}
    for key in sorted(config, key=depth):
        value = config[key]
        path = prefix + key
        if isinstance(value, dict) and value:
            for sub_key, sub_value in flatten(value, path + ".").items():
                _put(out, sub_key, sub_value)
        else:
            _put(out, path, value)
    return out


def _put(flat, key, value):
    """Set key as upstream's override does: drop what was below it, and a bare parent."""
    for existing in [k for k in flat if k == key or k.startswith(key + ".")]:
        del flat[existing]
    parts = key.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if parent in flat and (flat[parent] is None or flat[parent] == {}):
            del flat[parent]
    flat[key] = value


def apply(flat, override):
    """A copy of the flattened config `flat` with `override` (upstream format) applied."""
    out = dict(flat)
    for key in sorted(override, key=depth):
        value = override[key]
        for existing in [k for k in out if k == key or k.startswith(key + ".")]:
            del out[existing]
        for sub_key, sub_value in flatten({key: value}).items():
            _put(out, sub_key, sub_value)
    return out


def merge_overrides(stored, patch):
    """The stored (flattened) override of one level after a PATCH with `patch`."""
    return apply(stored, patch)


def reset_keys(stored, keys):
    """The stored override without `keys` and everything below them."""
    return {k: v for k, v in stored.items() if not any(k == r or k.startswith(r + ".") for r in keys)}


def unflatten(flat):
    """Nested JSON of a flattened config; removed (None) leaves are left out."""
    out = {}
    for key in sorted(flat, key=depth):
        value = flat[key]
        if value is None:
            continue
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value if not isinstance(value, dict) else dict(value)
    return out


def cleaned(flat):
    """Drop removal markers (None leaves): what a rendered config holds."""
    return {k: v for k, v in flat.items() if v is not None}


# ---------------------------------------------------------------------------- validation

def _match(pattern, parts):
    """'full' if the dotted pattern matches parts, 'prefix' if parts lead into it, else None."""
    pat = pattern.split(".")
    for i, seg in enumerate(pat):
        if seg == "**":
            return "full"
        if i >= len(parts):
            return "prefix"
        if seg != "*" and seg != parts[i]:
            return None
    return "full" if len(parts) == len(pat) else None


def _type_problem(kind, value):
    if kind == ANY or value is None:
        return None
    if kind == BOOL and not isinstance(value, bool):
        return "must be a boolean"
    if kind == TRUE and value is not True:
        return "must be true (leave the key out, or set it to null, to turn it off)"
    if kind == STR and not isinstance(value, str):
        return "must be a string"
    if isinstance(kind, tuple) and value not in kind:
        return "must be one of: %s" % ", ".join(kind)
    return None


def classify(path, value, level):
    """(where, problem): where is 'ok', 'unknown' or the level the key belongs to."""
    parts = path.split(".")
    for level_name in (level,) + tuple(n for n in LEVELS if n != level):
        for pattern, kind in LEVEL_PATHS[level_name].items():
            hit = _match(pattern, parts)
            if hit is None:
                continue
            if hit == "prefix" and value not in (None, {}):
                continue  # an object or value where the schema has more levels: keep looking
            if level_name != level:
                return level_name, None
            return "ok", (_type_problem(kind, value) if hit == "full" else None)
    return "unknown", None


def problems(override, level, where="config"):
    """Every reason `override` (upstream format) cannot be stored at `level`."""
    if not isinstance(override, dict):
        return ["%s must be a JSON object" % where]
    out = []
    bad_keys = [k for k in _all_keys(override) if not KEY_RE.fullmatch(k)]
    for key in bad_keys:
        out.append("%s has an invalid key %r: keys are dotted names of letters, digits, _, :, $ or -" % (where, key))
    if bad_keys:
        return out
    for path, value in flatten(override).items():
        if isinstance(value, list) and not _is_any(path, level):
            out.append("%s.%s must not be an array: Stack Auth's config uses objects keyed by id" % (where, path))
            continue
        found, problem = classify(path, value, level)
        if found == "ok":
            if problem:
                out.append("%s.%s %s" % (where, path, problem))
        elif found == "unknown" and _leads_somewhere(path):
            out.append("%s.%s must be an object" % (where, path))
        elif found == "unknown":
            out.append("%s.%s is not a Stack Auth config key" % (where, path))
        elif found == "environment" and level == "branch":
            out.append("%s.%s belongs to the environment config (per deployment: OAuth client secrets, "
                       "trusted domains, the mail server, localhost), not the %s config" % (where, path, level))
        else:
            out.append("%s.%s belongs to the %s config, not the %s config" % (where, path, found, level))
    return out


def _leads_somewhere(path):
    parts = path.split(".")
    return any(_match(p, parts) == "prefix" for paths in LEVEL_PATHS.values() for p in paths)


def _is_any(path, level):
    return any(_match(p, path.split(".")) == "full" and kind == ANY for p, kind in LEVEL_PATHS[level].items())


def _all_keys(config):
    for key, value in config.items():
        yield key
        if isinstance(value, dict):
            yield from _all_keys(value)

"""How Stack Auth's config (upstream's keys, flattened) maps onto the emulator's project config.

The emulator keeps a project's effective config flat in projects.config (sign_up_enabled, ...:
the shape of /projects/current) and its permission definitions in a table. Pure functions:

  render(config, defs)     emulator config (+ permission definitions) -> upstream's keys
  to_emulator(flat, old)   upstream's keys -> emulator config (fields it does not map kept from old)
  definitions(flat)        the permission definitions a rendered config holds
  fields_touched(keys)     which emulator fields a set of changed keys can change
  unmapped(flat)           the keys no emulator field stands for
"""

from .project_config import cleaned

# Emulator boolean fields and the upstream key each one renders.
BOOL_FIELDS = {
    "sign_up_enabled": "auth.allowSignUp",
    "credential_enabled": "auth.password.allowSignIn",
    "magic_link_enabled": "auth.otp.allowSignIn",
    "passkey_enabled": "auth.passkey.allowSignIn",
    "create_team_on_sign_up": "teams.createPersonalTeamOnSignUp",
    "client_team_creation_enabled": "teams.allowClientTeamCreation",
    "client_user_deletion_enabled": "users.allowClientUserDeletion",
    "allow_localhost": "domains.allowLocalhost",
    "allow_user_api_keys": "apiKeys.enabled.user",
    "allow_team_api_keys": "apiKeys.enabled.team",
    "require_publishable_client_key": "project.requirePublishableClientKey",
}
PERMISSION_FIELDS = {
    "team_creator_default_permissions": "rbac.defaultPermissions.teamCreator",
    "team_member_default_permissions": "rbac.defaultPermissions.teamMember",
    "user_default_permissions": "rbac.defaultPermissions.signUp",
}
FIELD_PATHS = {
    **BOOL_FIELDS,
    **PERMISSION_FIELDS,
    "oauth_account_merge_strategy": "auth.oauth.accountMergeStrategy",
    "oauth_providers": "auth.oauth.providers",
    "domains": "domains.trustedDomains",
    "email_config": "emails.server",
    "email_theme": "emails.selectedThemeId",
}
DEFINITIONS_PATH = "rbac.permissions"
EMAIL_SERVER_KEYS = (("host", "host"), ("port", "port"), ("username", "username"), ("password", "password"),
                     ("sender_name", "senderName"), ("sender_email", "senderEmail"))

# What Stack Auth gives a project that has no config of its own (stack-shared's
# organizationConfigDefaults), as upstream's emulator made it for a config file
# (plus domains.allowLocalhost, which it set), in the emulator's fields.
UPSTREAM_DEFAULT_CONFIG = {
    "sign_up_enabled": True, "credential_enabled": False, "magic_link_enabled": False,
    "passkey_enabled": False, "client_team_creation_enabled": False, "client_user_deletion_enabled": False,
    "allow_localhost": True, "allow_user_api_keys": False, "allow_team_api_keys": False,
    "create_team_on_sign_up": False, "require_publishable_client_key": False,
    "oauth_account_merge_strategy": "link_method", "oauth_providers": [], "domains": [],
    "team_creator_default_permissions": [], "team_member_default_permissions": [],
    "user_default_permissions": [],
}


# ---------------------------------------------------------------------------- mapping

def render(config, definitions=()):
    """Upstream's keys (flattened) for an emulator config and its permission definitions
    (rows with id, scope, description, contained)."""
    flat = {}
    for field, path in BOOL_FIELDS.items():
        default = field == "require_publishable_client_key"  # the emulator has always required it
        flat[path] = bool(config.get(field, default))
    flat["auth.oauth.accountMergeStrategy"] = config.get("oauth_account_merge_strategy", "link_method")
    flat["auth.oauth.providers"] = {}
    for p in config.get("oauth_providers") or []:
        base = "auth.oauth.providers.%s" % (p.get("provider_config_id") or p["id"])
        flat[base + ".type"] = p["id"]
        flat[base + ".isShared"] = p.get("type", "shared") == "shared"
        flat[base + ".allowSignIn"] = True
        flat[base + ".allowConnectedAccounts"] = True
        for ours, theirs in (("client_id", "clientId"), ("client_secret", "clientSecret"),
                             ("facebook_config_id", "facebookConfigId"), ("microsoft_tenant_id", "microsoftTenantId")):
            if p.get(ours) is not None:
                flat["%s.%s" % (base, theirs)] = p[ours]
    flat["domains.trustedDomains"] = {}
    for i, d in enumerate(config.get("domains") or []):
        flat["domains.trustedDomains.%d.baseUrl" % i] = d["domain"]
        flat["domains.trustedDomains.%d.handlerPath" % i] = d.get("handler_path") or "/handler"
    email = config.get("email_config") or {"type": "shared"}
    flat["emails.server.isShared"] = email.get("type", "shared") == "shared"
    flat["emails.server.provider"] = "smtp"
    for ours, theirs in EMAIL_SERVER_KEYS:
        if email.get(ours) is not None:
            flat["emails.server." + theirs] = email[ours]
    if config.get("email_theme") is not None:
        flat["emails.selectedThemeId"] = config["email_theme"]
    for field, path in PERMISSION_FIELDS.items():
        flat[path] = {}
        for entry in config.get(field) or []:
            flat["%s.%s" % (path, entry["id"])] = True
    flat[DEFINITIONS_PATH] = {}
    for row in definitions:
        base = "%s.%s" % (DEFINITIONS_PATH, row["id"])
        flat[base + ".scope"] = row.get("scope") or "team"
        if row.get("description") is not None:
            flat[base + ".description"] = row["description"]
        flat[base + ".containedPermissionIds"] = {}
        for contained in row.get("contained") or []:
            flat["%s.containedPermissionIds.%s" % (base, contained)] = True
    return {k: v for k, v in flat.items() if not (v == {} and any(x.startswith(k + ".") for x in flat))}


def _records(flat, prefix):
    """{record id: {sub path: value}} below prefix (e.g. 'auth.oauth.providers')."""
    out = {}
    for key, value in flat.items():
        if value is None or not key.startswith(prefix + "."):
            continue
        record, _, rest = key[len(prefix) + 1:].partition(".")
        entry = out.setdefault(record, {})
        if rest:
            entry[rest] = value
    return out


def to_emulator(flat, old=None):
    """The emulator config for upstream's keys (flattened, rendered); fields the mapping does
    not cover are kept from old."""
    flat = cleaned(flat)
    config = dict(old or {})
    for field, path in BOOL_FIELDS.items():
        if path in flat:
            config[field] = bool(flat[path])
    if "auth.oauth.accountMergeStrategy" in flat:
        config["oauth_account_merge_strategy"] = flat["auth.oauth.accountMergeStrategy"]
    providers = []
    old_by_config_id = {(p.get("provider_config_id") or p["id"]): p for p in (old or {}).get("oauth_providers") or []}
    for config_id, p in sorted(_records(flat, "auth.oauth.providers").items()):
        if not p.get("type") or not p.get("allowSignIn"):
            continue  # as upstream renders the legacy list: a provider without a type or sign-in is off
        entry = {k: v for k, v in old_by_config_id.get(config_id, {}).items()
                 if k not in ("client_id", "client_secret", "facebook_config_id", "microsoft_tenant_id")}
        entry.update({"id": p["type"], "type": "shared" if p.get("isShared", True) else "standard"})
        if config_id != p["type"]:
            entry["provider_config_id"] = config_id
        for ours, theirs in (("client_id", "clientId"), ("client_secret", "clientSecret"),
                             ("facebook_config_id", "facebookConfigId"), ("microsoft_tenant_id", "microsoftTenantId")):
            if p.get(theirs) is not None:
                entry[ours] = p[theirs]
        providers.append(entry)
    config["oauth_providers"] = sorted(providers, key=lambda e: e["id"])
    domains = [{"domain": d["baseUrl"], "handler_path": d.get("handlerPath") or "/handler"}
               for d in _records(flat, "domains.trustedDomains").values() if d.get("baseUrl")]
    config["domains"] = sorted(domains, key=lambda d: d["domain"])
    server = {k[len("emails.server."):]: v for k, v in flat.items() if k.startswith("emails.server.")}
    if server.get("isShared", True):
        config["email_config"] = {"type": "shared"}
    else:
        standard = {ours: server.get(theirs) for ours, theirs in EMAIL_SERVER_KEYS}
        config["email_config"] = {"type": "standard", **standard}
    if "emails.selectedThemeId" in flat:
        config["email_theme"] = flat["emails.selectedThemeId"]
    for field, path in PERMISSION_FIELDS.items():
        ids = sorted(k[len(path) + 1:] for k, v in flat.items()
                     if k.startswith(path + ".") and v is True and "." not in k[len(path) + 1:])
        config[field] = [{"id": i} for i in ids]
    return config


def definitions(flat):
    """Permission definitions of a rendered config: rows with id, scope, description, contained."""
    rows = []
    for perm_id, d in sorted(_records(cleaned(flat), DEFINITIONS_PATH).items()):
        contained = sorted(k[len("containedPermissionIds."):] for k, v in d.items()
                           if k.startswith("containedPermissionIds.") and v is True)
        rows.append({"id": perm_id, "scope": d.get("scope") or "team", "description": d.get("description"),
                     "contained": contained})
    return rows


def _related(a, b):
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def fields_touched(keys):
    """The emulator fields (and 'definitions') that a change of these keys can change."""
    out = {field for field, path in FIELD_PATHS.items() if any(_related(k, path) for k in keys)}
    if any(_related(k, DEFINITIONS_PATH) for k in keys):
        out.add("definitions")
    return out


def unmapped(flat):
    """The keys of a flattened override that no emulator field stands for (kept as stored)."""
    paths = list(FIELD_PATHS.values()) + [DEFINITIONS_PATH]
    return {k: v for k, v in flat.items() if not any(_related(k, p) for p in paths)}

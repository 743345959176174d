"""The database schema (PostgreSQL schema `emulator`) and its one-time setup.

Every table carries project_id, so one emulator serves many projects. Emails live in
contact_channels only: a user's primary email is its channel with is_primary.
"""

import json
import secrets

from .config import BRANCH_ID, PROJECT_ID  # noqa: F401  (BRANCH_ID documents the one branch)

SCHEMA_VERSION = 2

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS emulator;
CREATE TABLE IF NOT EXISTS emulator.settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS emulator.projects (
    id           text PRIMARY KEY,
    display_name text NOT NULL,
    description  text NOT NULL DEFAULT '',
    config       jsonb NOT NULL DEFAULT '{}',
    is_production_mode boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS emulator.api_keys (
    project_id text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('publishable_client_key', 'secret_server_key',
                                             'super_secret_admin_key', 'cron_secret')),
    secret     text NOT NULL CHECK (secret ~ '^[0-9A-Fa-f]{64}$'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, kind)
);
CREATE TABLE IF NOT EXISTS emulator.signing_keys (
    kid         text PRIMARY KEY,
    private_pem text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    active      boolean NOT NULL DEFAULT true,
    anonymous   boolean NOT NULL DEFAULT false
);
ALTER TABLE emulator.signing_keys ADD COLUMN IF NOT EXISTS anonymous boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS emulator.users (
    id                        uuid PRIMARY KEY,
    project_id                text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    display_name              text,
    profile_image_url         text,
    password_hash             text,
    client_metadata           jsonb,
    client_read_only_metadata jsonb,
    server_metadata           jsonb,
    selected_team_id          uuid,
    is_anonymous              boolean NOT NULL DEFAULT false,
    primary_email_auth_enabled boolean NOT NULL DEFAULT true,
    otp_auth_enabled          boolean NOT NULL DEFAULT false,
    passkey_auth_enabled      boolean NOT NULL DEFAULT false,
    totp_secret_base64        text,
    restricted_by_admin       boolean NOT NULL DEFAULT false,
    restricted_by_admin_reason text,
    restricted_by_admin_private_details text,
    country_code              text,
    signed_up_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_active_at            timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS users_project_signed_up_idx
    ON emulator.users (project_id, signed_up_at, id);
CREATE TABLE IF NOT EXISTS emulator.contact_channels (
    id            uuid PRIMARY KEY,
    project_id    text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES emulator.users(id) ON DELETE CASCADE,
    type          text NOT NULL DEFAULT 'email' CHECK (type IN ('email')),
    value         text NOT NULL,
    is_verified   boolean NOT NULL DEFAULT false,
    is_primary    boolean NOT NULL DEFAULT false,
    used_for_auth boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX IF NOT EXISTS contact_channels_auth_key
    ON emulator.contact_channels (project_id, type, lower(value)) WHERE used_for_auth;
CREATE UNIQUE INDEX IF NOT EXISTS contact_channels_user_value_key
    ON emulator.contact_channels (user_id, type, lower(value));
CREATE UNIQUE INDEX IF NOT EXISTS contact_channels_primary_key
    ON emulator.contact_channels (user_id) WHERE is_primary;
CREATE TABLE IF NOT EXISTS emulator.sessions (
    id                 uuid PRIMARY KEY,
    project_id         text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    user_id            uuid NOT NULL REFERENCES emulator.users(id) ON DELETE CASCADE,
    refresh_token_hash text NOT NULL UNIQUE,
    is_impersonation   boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at         timestamptz
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON emulator.sessions (user_id);
CREATE TABLE IF NOT EXISTS emulator.verification_codes (
    code_hash  text PRIMARY KEY,
    project_id text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    purpose    text NOT NULL,
    user_id    uuid REFERENCES emulator.users(id) ON DELETE CASCADE,
    data       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    attempts   integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS emulator.teams (
    id                        uuid PRIMARY KEY,
    project_id                text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    display_name              text NOT NULL,
    profile_image_url         text,
    client_metadata           jsonb,
    client_read_only_metadata jsonb,
    server_metadata           jsonb,
    created_at                timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS emulator.team_members (
    project_id        text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    team_id           uuid NOT NULL REFERENCES emulator.teams(id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES emulator.users(id) ON DELETE CASCADE,
    display_name      text,
    profile_image_url text,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX IF NOT EXISTS team_members_user_idx ON emulator.team_members (user_id);
CREATE TABLE IF NOT EXISTS emulator.permission_definitions (
    project_id  text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    scope       text NOT NULL CHECK (scope IN ('team', 'project')),
    id          text NOT NULL,
    description text,
    contained   jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (project_id, scope, id)
);
CREATE TABLE IF NOT EXISTS emulator.team_permissions (
    project_id    text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    team_id       uuid NOT NULL REFERENCES emulator.teams(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES emulator.users(id) ON DELETE CASCADE,
    permission_id text NOT NULL,
    PRIMARY KEY (team_id, user_id, permission_id)
);
CREATE TABLE IF NOT EXISTS emulator.project_permissions (
    project_id    text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES emulator.users(id) ON DELETE CASCADE,
    permission_id text NOT NULL,
    PRIMARY KEY (user_id, permission_id)
);
CREATE TABLE IF NOT EXISTS emulator.project_api_keys (
    id                  uuid PRIMARY KEY,
    project_id          text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    user_id             uuid REFERENCES emulator.users(id) ON DELETE CASCADE,
    team_id             uuid REFERENCES emulator.teams(id) ON DELETE CASCADE,
    description         text NOT NULL,
    secret_hash         text NOT NULL UNIQUE,
    last_four           text NOT NULL,
    is_public           boolean NOT NULL DEFAULT false,
    expires_at          timestamptz,
    manually_revoked_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((user_id IS NULL) <> (team_id IS NULL))
);
CREATE INDEX IF NOT EXISTS project_api_keys_user_idx ON emulator.project_api_keys (user_id);
CREATE INDEX IF NOT EXISTS project_api_keys_team_idx ON emulator.project_api_keys (team_id);
CREATE TABLE IF NOT EXISTS emulator.oauth_accounts (
    id                       uuid PRIMARY KEY,
    project_id               text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    user_id                  uuid NOT NULL REFERENCES emulator.users(id) ON DELETE CASCADE,
    provider_config_id       text NOT NULL,
    provider_account_id      text NOT NULL,
    email                    text,
    allow_sign_in            boolean NOT NULL DEFAULT true,
    allow_connected_accounts boolean NOT NULL DEFAULT true,
    created_at               timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (project_id, provider_config_id, user_id, provider_account_id)
);
CREATE INDEX IF NOT EXISTS oauth_accounts_user_idx ON emulator.oauth_accounts (user_id);
CREATE TABLE IF NOT EXISTS emulator.oauth_tokens (
    id               uuid PRIMARY KEY,
    project_id       text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    oauth_account_id uuid NOT NULL REFERENCES emulator.oauth_accounts(id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('access', 'refresh')),
    token            text NOT NULL,
    scopes           text[] NOT NULL DEFAULT '{}',
    expires_at       timestamptz,
    is_valid         boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS oauth_tokens_account_idx ON emulator.oauth_tokens (oauth_account_id);
ALTER TABLE emulator.projects ADD COLUMN IF NOT EXISTS owner_team_id uuid;
CREATE TABLE IF NOT EXISTS emulator.api_key_sets (
    id                     uuid PRIMARY KEY,
    project_id             text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    description            text NOT NULL,
    publishable_client_key text UNIQUE,
    secret_server_key      text UNIQUE,
    super_secret_admin_key text UNIQUE,
    expires_at             timestamptz NOT NULL,
    manually_revoked_at    timestamptz,
    created_at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS api_key_sets_project_idx ON emulator.api_key_sets (project_id);
CREATE TABLE IF NOT EXISTS emulator.config_overrides (
    project_id text NOT NULL REFERENCES emulator.projects(id) ON DELETE CASCADE,
    level      text NOT NULL CHECK (level IN ('project', 'branch', 'environment')),
    config     jsonb NOT NULL DEFAULT '{}',
    source     jsonb,
    PRIMARY KEY (project_id, level)
);
CREATE TABLE IF NOT EXISTS emulator.config_file_projects (
    absolute_file_path text PRIMARY KEY,
    project_id         text NOT NULL UNIQUE REFERENCES emulator.projects(id) ON DELETE CASCADE,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

# Placeholder keys (CONTRACT §4): non-secret by construction.
PLACEHOLDER_KEYS = {
    "publishable_client_key": "0" * 32 + "f" * 32,
    "secret_server_key": "0" * 32 + "e" * 32,
    "super_secret_admin_key": "0" * 32 + "d" * 32,
    "cron_secret": "0" * 32 + "c" * 32,
}

# The project config a fresh project gets: what the SDKs read from /projects/current.
DEFAULT_PROJECT_CONFIG = {
    "sign_up_enabled": True,
    "credential_enabled": True,
    "magic_link_enabled": True,
    "passkey_enabled": False,
    "client_team_creation_enabled": True,
    "client_user_deletion_enabled": True,
    "allow_localhost": True,
    "allow_user_api_keys": True,
    "allow_team_api_keys": True,
    "create_team_on_sign_up": False,
    "oauth_account_merge_strategy": "link_method",
    "oauth_providers": [
        {"id": "github", "type": "shared"},
        {"id": "google", "type": "shared"},
    ],
    "domains": [],
    "team_creator_default_permissions": [{"id": "team_admin"}],
    "team_member_default_permissions": [{"id": "team_member"}],
    "user_default_permissions": [],
}

# The team scope's system permissions (they contain nothing).
SYSTEM_PERMISSIONS = {
    "$update_team": "Update the team information",
    "$delete_team": "Delete the team",
    "$read_members": "Read and list the other members of the team",
    "$remove_members": "Remove other members from the team",
    "$invite_members": "Invite other users to the team",
    "$manage_api_keys": "Create and manage API keys for the team",
}

# Upstream's default team permissions: team_admin contains the $-prefixed system permissions.
DEFAULT_TEAM_PERMISSIONS = [
    ("team_member", "Default permission for team members",
     ["$read_members", "$invite_members"]),
    ("team_admin", "Default permission for team creators",
     ["$update_team", "$delete_team", "$read_members", "$remove_members", "$invite_members",
      "$manage_api_keys"]),
]


def create_project(cur, project_id, display_name, config=None, keys=None):
    """Insert a project with its API keys and default permissions, unless it exists."""
    merged = dict(DEFAULT_PROJECT_CONFIG, **(config or {}))
    cur.execute("INSERT INTO emulator.projects (id, display_name, config) VALUES (%s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING RETURNING id", (project_id, display_name, json.dumps(merged)))
    created = cur.fetchone() is not None
    for kind, secret in (keys or PLACEHOLDER_KEYS).items():
        cur.execute("INSERT INTO emulator.api_keys (project_id, kind, secret) VALUES (%s, %s, %s) "
                    "ON CONFLICT (project_id, kind) DO NOTHING", (project_id, kind, secret))
    for perm_id, description, contained in DEFAULT_TEAM_PERMISSIONS:
        cur.execute("INSERT INTO emulator.permission_definitions (project_id, scope, id, description, contained) "
                    "VALUES (%s, 'team', %s, %s, %s) ON CONFLICT DO NOTHING",
                    (project_id, perm_id, description, json.dumps(contained)))
    return created


def init_schema(cur, force_placeholders):
    """Create every table and the internal project; with force_placeholders, reset its keys."""
    cur.execute("SELECT pg_advisory_xact_lock(727274)")
    if _has_settings(cur):
        cur.execute("SELECT value FROM emulator.settings WHERE name = 'schema_version'")
        row = cur.fetchone()
        if row is None or row["value"] != str(SCHEMA_VERSION):
            # An older emulator schema: the emulator keeps no data worth migrating.
            cur.execute("DROP SCHEMA emulator CASCADE")
    cur.execute(SCHEMA_SQL)
    cur.execute("INSERT INTO emulator.settings (name, value) VALUES ('schema_version', %s) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))
    # As upstream seeds its internal project: every new user gets a personal team.
    create_project(cur, PROJECT_ID, "Stack Dashboard", {"create_team_on_sign_up": True})
    if force_placeholders:
        for kind, secret in PLACEHOLDER_KEYS.items():
            cur.execute("UPDATE emulator.api_keys SET secret = %s, updated_at = now() "
                        "WHERE project_id = %s AND kind = %s", (secret, PROJECT_ID, kind))
    cur.execute("INSERT INTO emulator.settings (name, value) VALUES ('instance_secret', %s) "
                "ON CONFLICT (name) DO NOTHING", (secrets.token_hex(32),))


def _has_settings(cur):
    cur.execute("SELECT to_regclass('emulator.settings') IS NOT NULL AS present")
    return cur.fetchone()["present"]

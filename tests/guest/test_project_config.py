"""Stack Auth's config format and its mapping onto the emulator's config (stackd/project_config.py,
config_mapping.py)."""

from __future__ import annotations

from typing import Any

import pytest
from stackd import config_mapping as cm
from stackd import project_config as pc
from stackd.schema import DEFAULT_PROJECT_CONFIG


def test_flatten_splits_nested_and_dotted_keys_alike() -> None:
    nested = pc.flatten({"auth": {"allowSignUp": False, "password": {"allowSignIn": True}}})
    dotted = pc.flatten({"auth.allowSignUp": False, "auth.password.allowSignIn": True})
    assert nested == dotted == {"auth.allowSignUp": False, "auth.password.allowSignIn": True}


def test_flatten_keeps_empty_objects_and_removals_as_leaves() -> None:
    assert pc.flatten({"rbac": {"permissions": {"read": {}}}, "auth.oauth.providers.github": None}) == {
        "rbac.permissions.read": {},
        "auth.oauth.providers.github": None,
    }


def test_a_key_replaces_everything_below_it_as_upstream_override_does() -> None:
    base = pc.flatten(
        {"auth": {"oauth": {"providers": {"github": {"type": "github"}, "google": {"type": "google"}}}}}
    )
    out = pc.apply(base, {"auth.oauth.providers": {"github": {"type": "github", "isShared": False}}})
    assert out == {
        "auth.oauth.providers.github.type": "github",
        "auth.oauth.providers.github.isShared": False,
    }
    # A dotted key changes one leaf and leaves its siblings.
    out = pc.apply(out, {"auth.oauth.providers.github.isShared": True})
    assert out["auth.oauth.providers.github.type"] == "github"
    assert out["auth.oauth.providers.github.isShared"] is True
    # null removes.
    assert pc.cleaned(pc.apply(out, {"auth.oauth.providers.github": None})) == {}


def test_merge_and_reset_of_a_stored_override() -> None:
    stored = pc.merge_overrides({}, {"auth": {"allowSignUp": False}, "teams.allowClientTeamCreation": True})
    stored = pc.merge_overrides(stored, {"auth.allowSignUp": True})
    assert stored == {"auth.allowSignUp": True, "teams.allowClientTeamCreation": True}
    assert pc.reset_keys(stored, ["auth"]) == {"teams.allowClientTeamCreation": True}


def test_unflatten_is_the_nested_json_without_removals() -> None:
    assert pc.unflatten({"a.b": 1, "a.c": None, "d": {}}) == {"a": {"b": 1}, "d": {}}


@pytest.mark.parametrize(
    ("override", "level", "needle"),
    [
        (
            {"auth.allowSignUpp": True},
            "environment",
            "config.auth.allowSignUpp is not a Stack Auth config key",
        ),
        ({"auth.allowSignUp": "yes"}, "branch", "config.auth.allowSignUp must be a boolean"),
        ({"domains.allowLocalhost": True}, "branch", "belongs to the environment config"),
        ({"auth.oauth.providers.github.clientSecret": "s"}, "branch", "belongs to the environment config"),
        ({"project.requirePublishableClientKey": True}, "branch", "belongs to the project config"),
        ({"auth.allowSignUp": True}, "project", "belongs to the branch config"),
        ({"rbac.defaultPermissions.teamMember.read": False}, "branch", "must be true"),
        ({"auth.oauth.providers.github.type": "myspace"}, "branch", "must be one of"),
        ({"auth.oauth.providers": ["github"]}, "branch", "must not be an array"),
        ({"bad key": True}, "branch", "invalid key"),
        ({"auth": 5}, "branch", "config.auth must be an object"),
    ],
)
def test_problems_name_the_key_and_what_to_do(override: dict[str, Any], level: str, needle: str) -> None:
    found = pc.problems(override, level)
    assert found, override
    assert any(needle in p for p in found), found


def test_what_each_level_may_hold() -> None:
    branch = {
        "auth": {
            "allowSignUp": False,
            "password": {"allowSignIn": True},
            "oauth": {"providers": {"github": {}}},
        },
        "teams.createPersonalTeamOnSignUp": True,
        "rbac.permissions.read": {
            "scope": "team",
            "description": "Read",
            "containedPermissionIds": {"$read_members": True},
        },
        "rbac.defaultPermissions.teamCreator.read": True,
        "payments.products.pro": {"displayName": "Pro", "prices": {}},
        "auth.oauth.providers.google": None,
    }
    assert pc.problems(branch, "branch") == []
    environment = {
        **branch,
        "domains.trustedDomains.main": {"baseUrl": "https://app.example.com", "handlerPath": "/h"},
    }
    assert pc.problems(environment, "environment") == []
    assert pc.problems({"project": {"requirePublishableClientKey": False}}, "project") == []
    assert pc.problems([], "branch") == ["config must be a JSON object"]


def test_render_and_back_keeps_the_emulator_config() -> None:
    config = dict(
        DEFAULT_PROJECT_CONFIG, domains=[{"domain": "https://a.example.com", "handler_path": "/handler"}]
    )
    back = cm.to_emulator(cm.render(config), old=config)
    for field in cm.FIELD_PATHS:
        if field in config:
            assert back[field] == config[field], field
    assert back["require_publishable_client_key"] is True


def test_to_emulator_reads_upstreams_keys() -> None:
    flat = pc.apply(
        cm.render(cm.UPSTREAM_DEFAULT_CONFIG),
        {
            "auth.allowSignUp": False,
            "auth.oauth.providers.gh": {
                "type": "github",
                "allowSignIn": True,
                "isShared": False,
                "clientId": "i",
                "clientSecret": "s",
            },
            "auth.oauth.providers.off": {"type": "google", "allowSignIn": False},
            "rbac.defaultPermissions.teamCreator": {"admin": True},
            "emails.server": {"isShared": False, "host": "smtp.example.com", "port": 587},
        },
    )
    config = cm.to_emulator(flat)
    assert config["sign_up_enabled"] is False
    assert config["oauth_providers"] == [
        {
            "id": "github",
            "type": "standard",
            "provider_config_id": "gh",
            "client_id": "i",
            "client_secret": "s",
        }
    ]
    assert config["team_creator_default_permissions"] == [{"id": "admin"}]
    assert config["email_config"]["type"] == "standard"
    assert config["email_config"]["host"] == "smtp.example.com"


def test_definitions_of_a_rendered_config() -> None:
    flat = pc.flatten(
        {"rbac.permissions.read": {"description": "Read", "containedPermissionIds": {"$read_members": True}}}
    )
    assert cm.definitions(flat) == [
        {"id": "read", "scope": "team", "description": "Read", "contained": ["$read_members"]}
    ]


def test_fields_touched_by_a_change() -> None:
    assert cm.fields_touched({"auth.allowSignUp"}) == {"sign_up_enabled"}
    assert cm.fields_touched({"auth"}) >= {"sign_up_enabled", "credential_enabled", "oauth_providers"}
    assert cm.fields_touched({"auth.oauth.providers.github.clientId"}) == {"oauth_providers"}
    assert cm.fields_touched({"rbac.permissions.read.description"}) == {"definitions"}
    assert cm.fields_touched({"payments.products.pro"}) == set()
    assert cm.unmapped({"payments.products.pro": {}, "auth.allowSignUp": True}) == {
        "payments.products.pro": {}
    }

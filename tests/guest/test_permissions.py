"""Permission logic of stackd/permissions.py that needs no database: recursive expansion,
list items and their order, permission id rules, definition shapes, and request readers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from stackd import errors, inputs, permissions, schema
from stackd.validate import MISSING, Fields

# The definitions a fresh project has (schema.DEFAULT_TEAM_PERMISSIONS) plus the system ones.
TEAM_DEFS = {
    "team_member": ("Default permission for team members", ["$read_members", "$invite_members"]),
    "team_admin": (
        "Default permission for team admins",
        [
            "$update_team",
            "$delete_team",
            "$read_members",
            "$remove_members",
            "$invite_members",
            "$manage_api_keys",
        ],
    ),
    **{pid: (description, []) for pid, description in schema.SYSTEM_PERMISSIONS.items()},
}


def test_direct_permissions_only_without_recursion() -> None:
    assert permissions.expand(["team_admin"], TEAM_DEFS, recursive=False) == {"team_admin"}


def test_recursive_expansion_includes_system_permissions() -> None:
    assert permissions.expand(["team_member"], TEAM_DEFS, recursive=True) == {
        "team_member",
        "$read_members",
        "$invite_members",
    }
    assert permissions.expand(["team_admin"], TEAM_DEFS, recursive=True) == {
        "team_admin",
        *schema.SYSTEM_PERMISSIONS,
    }


def test_expansion_is_transitive_and_survives_cycles() -> None:
    defs = {
        "a": (None, ["b"]),
        "b": (None, ["c", "a"]),
        "c": (None, ["$read_members"]),
        "$read_members": (None, []),
    }
    assert permissions.expand(["a"], defs, recursive=True) == {"a", "b", "c", "$read_members"}


def test_grants_of_undefined_permissions_are_skipped_like_upstream() -> None:
    # A grant whose definition was deleted, or a contained id that no longer exists.
    defs = {"a": (None, ["gone"])}
    assert permissions.expand(["deleted", "a"], defs, recursive=True) == {"a"}


def test_items_are_sorted_by_team_user_and_id_and_filtered_after_expansion() -> None:
    grants = {("u2", "t1"): ["team_member"], ("u1", "t2"): ["team_admin"], ("u1", "t1"): ["$update_team"]}
    items = permissions.permission_items(grants, TEAM_DEFS, recursive=True)
    keys = [(i["team_id"], i["user_id"], i["id"]) for i in items]
    assert keys == sorted(keys)
    assert items[0] == {"id": "$update_team", "user_id": "u1", "team_id": "t1"}
    only = permissions.permission_items(grants, TEAM_DEFS, recursive=True, permission_id="$read_members")
    assert [(i["team_id"], i["user_id"]) for i in only] == [("t1", "u2"), ("t2", "u1")]
    assert (
        permissions.permission_items(grants, TEAM_DEFS, recursive=False, permission_id="$read_members") == []
    )


def test_project_items_have_no_team_id() -> None:
    defs = {"read": (None, []), "all": (None, ["read"])}
    items = permissions.permission_items({("u1", None): ["all"]}, defs, recursive=True, with_team=False)
    assert items == [{"id": "all", "user_id": "u1"}, {"id": "read", "user_id": "u1"}]


@pytest.mark.parametrize(
    ("value", "custom", "problem"),
    [
        ("read_secret:info", False, None),
        ("$update_team", False, None),
        ("$bogus", False, "Invalid system permission"),
        ("Read", False, inputs.ID_MESSAGE),
        ("a-b", False, inputs.ID_MESSAGE),
        ("read_secret", True, None),
        ("$update_team", True, inputs.CUSTOM_ID_MESSAGE),
    ],
)
def test_permission_id_rules(value: str, custom: bool, problem: str | None) -> None:
    assert inputs.permission_id_problem(value, custom) == problem


def test_definition_json_as_upstream_lists_them() -> None:
    assert permissions.definition_json("$read_members", None, []) == {
        "id": "$read_members",
        "description": "Read and list the other members of the team",
        "contained_permission_ids": [],
    }
    assert permissions.definition_json("x", None, ["b", "a", "b"]) == {
        "id": "x",
        "contained_permission_ids": ["a", "b"],
    }


def _ctx(body: object, method: str = "POST", user_id: str | None = None) -> SimpleNamespace:
    def resolve(raw: str) -> str:
        if not user_id:
            raise errors.cannot_get_own_user_without_user()
        return user_id

    return SimpleNamespace(method=method, path="/api/v1/teams", body=lambda: body, resolve_user_id=resolve)


def test_read_body_needs_an_object_and_names_unknown_properties() -> None:
    spec = {"display_name": "string", "creator_user_id": "user", "client_metadata": "json"}
    f, values = inputs.read_body(_ctx(None), spec, required=("display_name",))
    assert f.problems == ["body must be defined"]
    f, values = inputs.read_body(_ctx([1]), spec, required=("display_name",))
    assert f.problems == ["body must be a `object` type"]
    f, values = inputs.read_body(_ctx({"display_name": "T", "b": 1, "a": 2}), spec)
    assert f.problems == ["body contains unknown properties: b, a"]
    assert values == {"display_name": "T"}


def test_read_body_resolves_me_and_checks_uuids() -> None:
    spec = {"creator_user_id": "user"}
    _, values = inputs.read_body(_ctx({"creator_user_id": "me"}, user_id="u-1"), spec)
    assert values == {"creator_user_id": "u-1"}
    with pytest.raises(errors.KnownError) as info:
        inputs.read_body(_ctx({"creator_user_id": "me"}), spec)
    assert info.value.code == "CANNOT_GET_OWN_USER_WITHOUT_USER"
    f, _ = inputs.read_body(_ctx({"creator_user_id": "not-a-uuid"}), spec)
    assert f.problems == ["body.creator_user_id must be a valid UUID"]
    _, values = inputs.read_body(_ctx({"creator_user_id": "3241A285-8329-4D69-8F3D-316E08CF140C"}), spec)
    assert values == {"creator_user_id": "3241a285-8329-4d69-8f3d-316e08cf140c"}


def test_definition_body_messages_are_upstreams() -> None:
    f, _ = inputs.read_body(
        _ctx({"id": "$x", "contained_permission_ids": ["ok", "$nope", 3]}),
        permissions.DEFINITION_BODY,
        required=("id",),
    )
    assert f.problems == [
        inputs.CUSTOM_ID_MESSAGE,
        "Invalid system permission",
        "body.contained_permission_ids[2] must be a `string` type",
    ]
    f, _ = inputs.read_body(_ctx({"id": "ok", "contained_permission_ids": "x"}), permissions.DEFINITION_BODY)
    assert f.problems == ["body.contained_permission_ids must be a `array` type"]


def test_check_raises_one_schema_error_for_params_query_and_body() -> None:
    ctx = _ctx({})
    p = Fields(ctx, {"team_id": "x"}, where="params")
    assert inputs.uuid_field(p, "team_id", True) is MISSING
    body, _ = inputs.read_body(ctx, {"display_name": "string"}, required=("display_name",))
    with pytest.raises(errors.KnownError) as info:
        inputs.check(ctx, p, body)
    assert info.value.message.splitlines() == [
        "Request validation failed on POST /api/v1/teams:",
        "  - params.team_id must be a valid UUID",
        "  - body.display_name must be defined",
    ]


def test_new_known_errors_carry_the_details_stack_shared_reads() -> None:
    body = json.loads(errors.permission_scope_mismatch("team_admin", "project", "team").body())
    assert body["code"] == "WRONG_PERMISSION_SCOPE"
    assert body["details"] == {
        "permission_id": "team_admin",
        "expected_scope": "project",
        "actual_scope": "team",
    }
    assert errors.team_permission_not_found("t", "u", "p").details == {
        "team_id": "t",
        "user_id": "u",
        "permission_id": "p",
    }
    assert errors.permission_id_already_exists("p").status == 400
    assert errors.contained_permission_not_found("p").details == {"permission_id": "p"}

"""An example E2E suite: what a project's tests against the emulator look like.

Run: pytest examples --stack-emulator -n 2
"""

import uuid

import httpx

from pytest_stack_emulator import StackEmulator


def test_sign_up_then_read_me(stack_emulator: StackEmulator) -> None:
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    with stack_emulator.client("client") as client:
        r = client.post("/api/v1/auth/password/sign-up", json={"email": email, "password": "hunter2-hunter2"})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        me = client.get("/api/v1/users/me", headers={"x-stack-access-token": token})
    assert me.status_code == 200
    assert me.json()["primary_email"] == email


def test_server_creates_and_lists_users(stack_emulator: StackEmulator) -> None:
    with stack_emulator.client("server") as server:
        created = server.post(
            "/api/v1/users", json={"primary_email": "ada@example.com", "display_name": "Ada"}
        )
        assert created.status_code == 201, created.text
        listed = server.get("/api/v1/users").json()["items"]
    assert created.json()["id"] in [u["id"] for u in listed]


def test_verification_email_reaches_the_mail_catcher(stack_emulator: StackEmulator) -> None:
    box = f"mail-{uuid.uuid4().hex[:8]}"
    with stack_emulator.client("client") as client:
        client.post(
            "/api/v1/auth/password/sign-up", json={"email": f"{box}@example.com", "password": "pw-123456789"}
        )
    messages = httpx.get(f"{stack_emulator.inbucket_url}/api/v1/mailbox/{box}").json()
    assert len(messages) == 1
    assert "verify" in messages[0]["subject"].lower()


def test_wrong_key_is_rejected(stack_emulator: StackEmulator) -> None:
    r = httpx.get(
        f"{stack_emulator.backend_url}/api/v1/users",
        headers={**stack_emulator.headers("server"), "x-stack-secret-server-key": "0" * 64},
    )
    assert r.status_code == 401


def test_app_environment(stack_emulator: StackEmulator) -> None:
    env = stack_emulator.env()
    assert env["NEXT_PUBLIC_STACK_API_URL"] == stack_emulator.backend_url
    assert httpx.get(f"{env['STACK_API_URL']}/health?db=1").json() == {"status": "ok"}

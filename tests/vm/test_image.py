"""The compat image (issue: offline build from cloud_init/): a real build or the cached one,
a cold boot, then the contract's services, API, mail, guest agent and key rotation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_stack_emulator import emulator
from pytest_stack_emulator.builder import CompatImageBuilder, file_digest, inputs_hash
from pytest_stack_emulator.config import resolve
from pytest_stack_emulator.health import check_service
from pytest_stack_emulator.images import Image
from pytest_stack_emulator.manifest import PLACEHOLDER_KEYS
from tests.helpers import TEST_BASE_PORT


@pytest.fixture(scope="module")
def cold(vm_home: Path) -> Iterator[emulator.Instance]:
    settings = resolve(
        {"image": "compat", "home": vm_home, "cold": True, "base_port": TEST_BASE_PORT}, {}, {}
    )
    prepared = emulator.prepare(settings)
    inst = emulator.start(prepared, worker="image-test")
    print(f"cold boot to all services healthy: {inst.timings['healthy']:.1f} s")
    yield inst
    inst.stop()


def test_image_is_built_or_reused_when_inputs_are_unchanged(compat_image: Image) -> None:
    result = CompatImageBuilder(compat_image.directory.parent).build()
    assert not result.built
    m = result.manifest
    assert m.inputs_hash == inputs_hash()
    assert m.digest == file_digest(compat_image.disk)
    assert m.ram_mb <= 1024
    assert m.boot.method == "kernel"
    assert (compat_image.directory / "vmlinuz").is_file()
    assert m.keys == PLACEHOLDER_KEYS


def test_cold_boot_passes_every_health_check(cold: emulator.Instance) -> None:
    with httpx.Client() as client:
        for service in cold.prepared.image.manifest.services:
            result = check_service(client, service, cold.handle.ports[service.name])
            assert result.ok, result.detail
        assert client.get(f"{cold.handle.backend_url}/health?db=1").json() == {"status": "ok"}
        page = client.get(f"{cold.handle.dashboard_url}/handler/sign-in")
        assert page.status_code == 200
        assert "html" in page.headers["content-type"]


def test_postgres_and_redis_listen_inside_the_guest_only(cold: emulator.Instance) -> None:
    out = cold.machine.qga().exec("/usr/bin/ss", ["-ltnH"]).stdout
    listeners = {line.split()[3] for line in out.splitlines()}
    pg = {a for a in listeners if a.endswith(":5432")}
    redis = {a for a in listeners if a.endswith(":6379")}
    assert pg
    assert redis
    assert all(a.startswith(("127.0.0.1:", "[::1]:")) for a in pg | redis), listeners


def test_wrong_or_missing_key_gets_401_with_json(cold: emulator.Instance) -> None:
    h = cold.handle
    bad = {**h.headers("server"), "x-stack-secret-server-key": "1" * 64}
    r = httpx.get(f"{h.backend_url}/api/v1/users", headers=bad)
    assert r.status_code == 401
    assert "error" in r.json()
    missing = {k: v for k, v in h.headers("server").items() if k != "x-stack-secret-server-key"}
    assert httpx.get(f"{h.backend_url}/api/v1/users", headers=missing).status_code == 401
    # A client key does not open server endpoints.
    assert httpx.get(f"{h.backend_url}/api/v1/users", headers=h.headers("client")).status_code == 401


def test_users_are_created_and_listed(cold: emulator.Instance) -> None:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    with cold.handle.client("server") as server:
        body = {"primary_email": email, "primary_email_auth_enabled": True, "display_name": "Grace"}
        created = server.post("/api/v1/users", json=body)
        assert created.status_code == 201, created.text
        user = created.json()
        assert (user["primary_email"], user["display_name"]) == (email, "Grace")
        assert user["primary_email_verified"] is False
        items = server.get("/api/v1/users").json()["items"]
        assert user["id"] in [u["id"] for u in items]
        # A second user may not sign in with the same address (upstream's 409).
        again = {"primary_email": email, "primary_email_auth_enabled": True}
        assert server.post("/api/v1/users", json=again).status_code == 409


def test_sign_up_returns_tokens_and_mails_a_verification(cold: emulator.Instance) -> None:
    h = cold.handle
    box = f"u{uuid.uuid4().hex[:10]}"
    with h.client("client") as client:
        r = client.post(
            "/api/v1/auth/password/sign-up",
            json={"email": f"{box}@example.com", "password": "correct-horse-1"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert {"access_token", "refresh_token", "user_id"} <= body.keys()
        me = client.get("/api/v1/users/me", headers={"x-stack-access-token": body["access_token"]})
        assert me.json()["id"] == body["user_id"]
        again = client.post(
            "/api/v1/auth/password/sign-up", json={"email": f"{box}@example.com", "password": "x-123456789"}
        )
        assert again.status_code == 409
    listing = httpx.get(f"{h.inbucket_url}/api/v1/mailbox/{box}").json()
    assert len(listing) == 1
    assert "verify" in listing[0]["subject"].lower()
    message = httpx.get(f"{h.inbucket_url}/api/v1/mailbox/{box}/{listing[0]['id']}").json()
    assert f"{box}@example.com" in " ".join(message["to"])
    assert message["body"]["text"].strip()


def test_s3_objects_round_trip(cold: emulator.Instance) -> None:
    url = cold.handle.minio_url
    assert httpx.put(f"{url}/bucket-a").status_code in (200, 201)
    assert httpx.put(f"{url}/bucket-a/dir/file.txt", content=b"hello s3").status_code == 200
    assert httpx.get(f"{url}/bucket-a/dir/file.txt").content == b"hello s3"
    assert httpx.get(f"{url}/bucket-a/missing").status_code == 404


def test_mock_oauth_discovery_uses_the_port_the_client_used(cold: emulator.Instance) -> None:
    port = cold.handle.ports["mock_oauth"]
    doc = httpx.get(f"http://localhost:{port}/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"http://localhost:{port}"
    assert doc["jwks_uri"].startswith(f"http://localhost:{port}/")


def test_guest_agent_answers_guest_sync(cold: emulator.Instance) -> None:
    assert cold.machine.qga().sync(timeout=10) >= 0


def test_cold_boot_sets_the_guest_clock_to_the_hosts(cold: emulator.Instance) -> None:
    # The RTC alone leaves it up to about 1.5 s off; the host sets it after the boot.
    assert "clock" in cold.timings
    assert abs(cold.machine.qga().clock_offset()) < 0.2


def test_bad_rotation_input_changes_nothing(cold: emulator.Instance) -> None:
    qga = cold.machine.qga()
    bad = b"STACK_INTERNAL_PROJECT_SECRET_SERVER_KEY=not-hex\n"
    result = qga.exec("/usr/local/bin/trigger-fast-rotate", input_data=bad)
    assert result.exitcode != 0
    assert "STACK_INTERNAL_PROJECT_SECRET_SERVER_KEY" in result.stderr + result.stdout
    assert "not-hex" not in result.stderr + result.stdout
    with cold.handle.client("server") as server:
        assert server.get("/api/v1/users").status_code == 200


def test_rotation_swaps_the_keys_and_keeps_the_data(cold: emulator.Instance) -> None:
    h = cold.handle
    with h.client("server") as server:
        before = {u["id"] for u in server.get("/api/v1/users").json()["items"]}
    assert before
    keys = emulator.rotate_keys(cold.machine, h.vm_dir)
    old = h.headers("server")
    h.publishable_client_key = keys["publishable_client_key"]
    h.secret_server_key = keys["secret_server_key"]
    h.super_secret_admin_key = keys["super_secret_admin_key"]
    assert httpx.get(f"{h.backend_url}/api/v1/users", headers=old).status_code == 401
    with h.client("server") as server:
        r = server.get("/api/v1/users")
    assert r.status_code == 200
    assert {u["id"] for u in r.json()["items"]} == before
    assert (h.vm_dir / "internal-pck").read_text() == keys["publishable_client_key"]
    assert (h.vm_dir / "internal-pck").stat().st_mode & 0o777 == 0o600

"""Security (issue 12), on real QEMU and the compat image: what a VM exposes on the host, the
modes of its files, host sharing, rotated secrets, and the backend's key checks on every route.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_stack_emulator import emulator
from pytest_stack_emulator.config import resolve
from pytest_stack_emulator.errors import ConfigError
from tests.helpers import TEST_BASE_PORT, listening_ports, qemu_pids, read_json_block, session_argv

BASE = TEST_BASE_PORT + 800


@pytest.fixture(scope="module")
def stack(captured_home: Path) -> Iterator[emulator.Instance]:
    """One resumed VM with the default settings: placeholder keys, nothing shared."""
    settings = resolve({"image": "compat", "home": captured_home, "base_port": BASE}, {}, {})
    inst = emulator.start(emulator.prepare(settings), worker="security")
    yield inst
    inst.stop()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_forwarded_port_listens_on_127_0_0_1_only(stack: emulator.Instance) -> None:
    assert stack.machine.pid is not None
    listening = listening_ports(stack.machine.pid)
    assert sorted(listening) == sorted(f"127.0.0.1:{port}" for port in stack.handle.ports.values())
    # libslirp listens with a backlog of 1; the host raised it (listen_backlog.py).
    assert set(listening.values()) == {128}


def test_run_directories_and_keys_are_private_and_the_home_not_world_writable(
    stack: emulator.Instance, captured_home: Path, tmp_path: Path
) -> None:
    assert mode(stack.vm_dir) == 0o700  # its overlay, sockets, logs and keys
    assert mode(stack.vm_dir / "internal-pck") == 0o600
    assert mode(stack.machine.cfg.sockets) == 0o700
    assert mode(captured_home / "run") == 0o700
    assert not mode(captured_home) & stat.S_IWOTH
    # A home the plugin makes is private (snapshots hold placeholder keys only: CONTRACT §4).
    made = tmp_path / "new-home"
    emulator.Home(made).ensure()
    assert (mode(made), mode(made / "run")) == (0o700, 0o700)
    # A home anyone may write to is refused before anything is written into it.
    shared = tmp_path / "world-writable"
    shared.mkdir()
    shared.chmod(0o777)
    settings = resolve({"image": "compat", "home": shared, "base_port": BASE}, {}, {})
    with pytest.raises(
        ConfigError, match=rf"home {shared} is world-writable \(mode 0777\).*chmod o-w {shared}"
    ):
        emulator.prepare(settings)
    assert list(shared.iterdir()) == []


def test_nothing_is_shared_with_the_guest_by_default(stack: emulator.Instance) -> None:
    assert b"-fsdev" not in Path(f"/proc/{stack.machine.pid}/cmdline").read_bytes().split(b"\0")
    mounts = stack.machine.qga().exec("/bin/cat", ["/proc/mounts"]).stdout
    assert " 9p " not in mounts
    assert "/host " not in mounts


def test_a_shared_directory_is_all_the_guest_sees_of_the_host(captured_home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("hello\n")
    (shared / "abs-link").symlink_to(outside / "secret.txt")
    (shared / "rel-link").symlink_to("../outside/secret.txt")
    (shared / "dir-link").symlink_to(tmp_path)
    settings = resolve({"image": "compat", "home": captured_home, "base_port": BASE, "share": shared}, {}, {})
    inst = emulator.start(emulator.prepare(settings), worker="share")
    try:
        qga = inst.machine.qga()
        assert qga.exec("/bin/cat", ["/host/hello.txt"]).stdout == "hello\n"
        # Links in the share resolve inside the guest, never to the host's files.
        qga.exec("/bin/ln", ["-s", str(outside / "secret.txt"), "/host/guest-link"])
        for path in (
            "abs-link",
            "rel-link",
            "dir-link/outside/secret.txt",
            "guest-link",
            "../outside/secret.txt",
        ):
            result = qga.exec("/bin/cat", [f"/host/{path}"])
            assert result.exitcode != 0, path
            assert "host secret" not in result.stdout
        listing = qga.exec("/bin/ls", ["-a", "/host/.."]).stdout.split()
        assert "outside" not in listing
        assert "usr" in listing  # the guest's own root
        # What the guest writes lands in the shared directory.
        qga.exec("/bin/sh", ["-c", "echo from-guest > /host/from-guest.txt"])
        assert (shared / "from-guest.txt").read_text() == "from-guest\n"
    finally:
        inst.stop()
    assert (outside / "secret.txt").read_text() == "host secret\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


ROTATED_SUITE = """
import json, os, logging

def test_keys(stack_emulator):
    h = stack_emulator
    with open(os.path.join(os.environ["RECORD_DIR"], "keys.json"), "w") as f:
        json.dump({"server": h.secret_server_key, "admin": h.super_secret_admin_key, "vm_dir": str(h.vm_dir)}, f)
    with h.client("admin") as admin:
        assert admin.get("/api/v1/internal/projects/current").status_code == 200
    logging.getLogger("app").info("the handle: %r", h)
    assert h.boot == "on purpose", "fail, to keep the run directory and show the locals"
"""


def grep(secrets: list[str], root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Files under ``root`` (but ``skip``) that contain one of ``secrets``, read in chunks."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink() or path.name in skip:
            continue
        with path.open("rb") as f:
            tail = b""
            while chunk := f.read(1 << 24):
                data, tail = tail + chunk, (tail + chunk)[-64:]
                found += [f"{path} holds {s[:6]}..." for s in secrets if s.encode() in data]
    return sorted(set(found))


def test_rotated_secrets_are_never_printed_logged_or_written_on_the_host(
    captured_home: Path, tmp_path: Path
) -> None:
    (tmp_path / "test_rotated.py").write_text(ROTATED_SUITE)
    records = tmp_path / "records"
    records.mkdir()
    argv = session_argv(captured_home, BASE, "--stack-emulator-rotate", "-v", "--showlocals", "-o", "log_cli=true",
                        "--log-cli-level=DEBUG", "test_rotated.py")  # fmt: skip
    result = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "RECORD_DIR": str(records)})  # fmt: skip
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "fail, to keep the run directory" in result.stdout
    keys = json.loads((records / "keys.json").read_text())
    secrets = [keys["server"], keys["admin"]]
    assert all(re.fullmatch("[0-9a-f]{64}", s) for s in secrets)
    assert [s for s in secrets if s in result.stdout + result.stderr] == []
    vm_dir = Path(keys["vm_dir"])
    assert (vm_dir / "serial.log").exists()  # kept, with everything the VM wrote
    # Only the guest's own disk holds them (the contract: the guest keeps its keys).
    assert grep(secrets, captured_home, skip=("disk.qcow2",)) == []
    shutil.rmtree(vm_dir)

    # `stack-emulator run` hands the rotated secret to its command and prints it nowhere.
    out_file = tmp_path / "from-app"
    app = [
        sys.executable,
        "-c",
        f"import os; open({str(out_file)!r}, 'w').write(os.environ['STACK_SECRET_SERVER_KEY'])",
    ]
    cli = [sys.executable, "-m", "pytest_stack_emulator.cli"]
    options = ["--rotate", f"--home={captured_home}", f"--base-port={BASE}"]
    ran = subprocess.run([*cli, "run", *options, "--", *app], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    secret = out_file.read_text()
    assert re.fullmatch("[0-9a-f]{64}", secret)
    assert secret not in ran.stdout + ran.stderr
    assert "(secret: not printed; `stack-emulator env " in ran.stderr
    # `start` describes the stack without its rotated secrets; `env` prints them when asked.
    proc = subprocess.Popen([*cli, "start", "--json", *options], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)  # fmt: skip
    try:
        described = read_json_block(proc)
        hidden = f"(secret: not printed; `stack-emulator env {described['id']}` prints it, `run -- CMD` passes it on)"
        assert described["keys"]["secret_server_key"] == described["keys"]["super_secret_admin_key"] == hidden
        assert described["env"]["STACK_SECRET_SERVER_KEY"] == hidden
        assert re.fullmatch("[0-9a-f]{64}", described["keys"]["publishable_client_key"])  # publishable: shown
        env = subprocess.run([*cli, "env", f"--home={captured_home}", "--format=json", described["id"]],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        assert re.fullmatch("[0-9a-f]{64}", json.loads(env.stdout)["STACK_SECRET_SERVER_KEY"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert qemu_pids(f"{captured_home}/run/[^ ]*cli") == []


# The backend's routes that authenticate by themselves, and why they are open.
PUBLIC_ROUTES = {
    ("GET", "/health"): "the health check",
    ("GET", "/projects/<project_id>/.well-known/jwks.json"): "public keys",
    ("GET", "/projects-anonymous-users/<project_id>/.well-known/jwks.json"): "public keys",
    ("GET", "/auth/oauth/authorize/<provider_id>"): "checks client_id and client_secret (below)",
    ("GET", "/auth/oauth/callback/<provider_id>"): "the provider's redirect, bound to its state",
    ("POST", "/auth/oauth/callback/<provider_id>"): "the provider's redirect, bound to its state",
    ("POST", "/auth/oauth/token"): "checks client_id and client_secret (below)",
}

# Enumerates the route tables of the guest's own stackd, as the backend mounts them.
ROUTES_SCRIPT = (
    "import json, sys; sys.path.insert(0, '/usr/local/lib/stack-emulator'); from stackd import api; "
    "print(json.dumps([[m, p, a] for t in [api.health_routes] + [mod.routes for mod in api.MODULES] "
    "for (m, p, _, a, _) in t.entries]))"
)


def test_every_backend_route_rejects_missing_and_wrong_keys(stack: emulator.Instance) -> None:
    result = stack.machine.qga().exec("/usr/bin/python3", ["-c", ROUTES_SCRIPT], timeout=120)
    assert result.exitcode == 0, result.stderr
    routes = [(method, path, access) for method, path, access in json.loads(result.stdout)]
    assert len(routes) > 90
    assert {(m, p) for m, p, access in routes if access is None} == set(PUBLIC_ROUTES)
    h = stack.handle
    base = {"x-stack-project-id": h.project_id}
    keys = {
        "client": h.publishable_client_key,
        "server": h.secret_server_key,
        "admin": h.super_secret_admin_key,
    }
    header = {"client": "x-stack-publishable-client-key", "server": "x-stack-secret-server-key",
              "admin": "x-stack-super-secret-admin-key"}  # fmt: skip
    checked = 0
    with httpx.Client(base_url=f"{h.backend_url}/api/v1", timeout=30) as http:
        for method, path, access in routes:
            if access is None:
                continue
            url = re.sub(r"<[^>]+>", lambda _: str(uuid.uuid4()), path)
            lowest = access[0]  # route tables list the allowed access types from the lowest up
            attempts = {
                "no headers": {},
                "no key": {**base, "x-stack-access-type": lowest},
                # A key of the wrong kind in the right header: the server key as the publishable
                # key, the publishable key as the server key, the server key as the admin key.
                "wrong kind": {**base, "x-stack-access-type": lowest,
                               header[lowest]: keys["server" if lowest != "server" else "client"]},
            }  # fmt: skip
            if lowest != "client":  # a client key (valid) on a server or admin route
                attempts["client key"] = {
                    **base,
                    "x-stack-access-type": "client",
                    header["client"]: keys["client"],
                }
            if lowest == "admin":  # a server key (valid) on an admin route
                attempts["server key"] = {**base, "x-stack-access-type": "server", header["client"]: keys["client"],
                                          header["server"]: keys["server"]}  # fmt: skip
            for what, headers in attempts.items():
                body = {} if method in ("POST", "PATCH", "PUT") else None
                r = http.request(method, url, headers=headers, json=body)
                assert r.status_code in (400, 401), (
                    f"{what}: {method} {path} answered {r.status_code}: {r.text}"
                )
                assert r.json()["code"] in REJECTIONS, f"{what}: {method} {path}: {r.text}"
                checked += 1
        # The two public routes that take a client secret refuse a missing or a wrong one.
        for secret in ("", keys["server"], keys["admin"]):
            form = {"grant_type": "refresh_token", "client_id": h.project_id, "client_secret": secret,
                    "refresh_token": "x"}  # fmt: skip
            r = http.post("/auth/oauth/token", data=form)
            assert (r.status_code, r.json()["code"]) == (400, "INVALID_OAUTH_CLIENT_ID_OR_SECRET"), r.text
            query = {"client_id": h.project_id, "client_secret": secret or "0", "redirect_uri": "http://localhost/cb",
                     "scope": "legacy", "state": "s", "grant_type": "authorization_code", "code_challenge": "c" * 43,
                     "code_challenge_method": "S256", "response_type": "code"}  # fmt: skip
            r = http.get("/auth/oauth/authorize/github", params=query)
            assert (r.status_code, r.json()["code"]) == (401, "INVALID_PUBLISHABLE_CLIENT_KEY"), r.text
    print(f"{checked} rejected requests on {len(routes) - len(PUBLIC_ROUTES)} routes")


REJECTIONS = {
    "ACCESS_TYPE_REQUIRED",
    "PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT",
    "SERVER_AUTHENTICATION_REQUIRED",
    "ADMIN_AUTHENTICATION_REQUIRED",
    "INVALID_PUBLISHABLE_CLIENT_KEY",
    "INVALID_SECRET_SERVER_KEY",
    "INVALID_SUPER_SECRET_ADMIN_KEY",
    "INSUFFICIENT_ACCESS_TYPE",
}

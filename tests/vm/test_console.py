"""The console on the compat image's dashboard port, in headless Chromium, and the mail helpers.

One stack is resumed from the snapshot on its own port block; the console must list what the
API made, act through its forms and show the env an app needs with the host ports this
worker really has, and ``stack_emulator.mail`` must find the mails the backend sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytest_stack_emulator import emulator
from pytest_stack_emulator.mailbox import MailTimeout
from tests.browser import chromium_binary
from tests.console_scenario import Stack, run_console_scenario
from tests.helpers import TEST_BASE_PORT, resumed_stack

CONSOLE_BASE_PORT = TEST_BASE_PORT + 300


@pytest.fixture(scope="module")
def stack(vm_home: Path) -> Iterator[emulator.StackEmulator]:
    with resumed_stack(vm_home, CONSOLE_BASE_PORT, "console") as handle:
        yield handle


def test_console_in_a_browser(stack: emulator.StackEmulator) -> None:
    if chromium_binary() is None:
        pytest.fail("chromium is not installed: run `bash scripts/setup`", pytrace=False)
    run_console_scenario(
        Stack(stack.dashboard_url, stack.backend_url, stack.publishable_client_key, stack.secret_server_key)
    )


def test_mail_wait_for_finds_the_codes_the_backend_sent(stack: emulator.StackEmulator) -> None:
    email = f"mail-{uuid.uuid4().hex[:8]}@example.com"
    with stack.client("client") as client:
        r = client.post(
            "/api/v1/auth/password/sign-up",
            json={
                "email": email,
                "password": "mail-password-1",
                "verification_callback_url": "http://localhost:3000/v",
            },
        )
        assert r.status_code == 200, r.text
        verification = stack.mail.wait_for(to=email, kind="verification", timeout=10)
        assert verification.link == f"http://localhost:3000/v?code={verification.code}"
        r = client.post("/api/v1/contact-channels/verify", json={"code": verification.code})
        assert r.status_code == 200, r.text
        r = client.post(
            "/api/v1/auth/password/send-reset-code",
            json={"email": email, "callback_url": "http://localhost:3000/r"},
        )
        assert r.status_code == 200, r.text
        reset = stack.mail.wait_for(to=email, kind="reset", timeout=10)
        r = client.post(
            "/api/v1/auth/password/reset", json={"code": reset.code, "password": "new-password-2"}
        )
        assert r.status_code == 200, r.text
    assert [m.kind for m in stack.mail.messages(to=email)] == ["reset", "verification"]
    with pytest.raises(MailTimeout, match=f"no otp mail to {email}"):
        stack.mail.wait_for(to=email, kind="otp", timeout=0.5)
    assert httpx.get(stack.inbucket_url + "/").status_code == 200

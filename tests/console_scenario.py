"""The console's browser scenario, run against a host-run stackd (tests/guest) or a VM (tests/vm).

Users, a team, sessions and a mail are made through the backend API; headless Chromium then
reads the console, revokes one user's sessions and deletes another user through the page's
own forms, and the API confirms each change.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.browser import Browser

# Set it to a path to get a PNG of the console as the scenario leaves it (docs/console.png).
SCREENSHOT_ENV = "STACK_EMULATOR_CONSOLE_SCREENSHOT"
CALLBACK = "http://localhost:3000/handler/email-verification"


@dataclass(frozen=True)
class Stack:
    dashboard_url: str
    backend_url: str
    publishable_client_key: str
    secret_server_key: str
    project_id: str = "internal"

    def headers(self, access: str) -> dict[str, str]:
        h = {
            "x-stack-project-id": self.project_id,
            "x-stack-access-type": access,
            "x-stack-publishable-client-key": self.publishable_client_key,
        }
        if access == "server":
            h["x-stack-secret-server-key"] = self.secret_server_key
        return h


def user_row(email: str) -> str:
    """A JS expression for the console's table row of the user with this email."""
    return f"[...document.querySelectorAll('tr.user')].find(r => r.cells[0].innerText.startsWith({json.dumps(email)}))"


def run_console_scenario(stack: Stack) -> None:
    tag = uuid.uuid4().hex[:8]
    signed_up, created = f"console-{tag}@example.com", f"console-b-{tag}@example.com"
    with httpx.Client(base_url=stack.backend_url + "/api/v1", timeout=30) as api:
        r = api.post(
            "/auth/password/sign-up",
            headers=stack.headers("client"),
            json={
                "email": signed_up,
                "password": "console-password-1",
                "verification_callback_url": CALLBACK,
            },
        )
        assert r.status_code == 200, r.text
        a_id, refresh_token = r.json()["user_id"], r.json()["refresh_token"]
        server = stack.headers("server")
        r = api.post("/users", headers=server, json={"primary_email": created, "display_name": f"Bea {tag}"})
        assert r.status_code == 201, r.text
        b_id = r.json()["id"]
        r = api.post("/teams", headers=server, json={"display_name": f"Team {tag}", "creator_user_id": b_id})
        assert r.status_code == 201, r.text
        assert api.post("/auth/sessions", headers=server, json={"user_id": b_id}).status_code == 200

        with Browser() as browser:
            browser.goto(stack.dashboard_url + "/")
            assert browser.url == stack.dashboard_url + "/console/"
            users = browser.text("#users")
            assert signed_up in users
            assert f"{created}\tBea {tag}" in users
            teams = browser.text("#teams")
            assert f"Team {tag}" in teams
            assert created in teams.split(f"Team {tag}", 1)[1].splitlines()[0]
            mails = browser.text("#mails")
            assert f"{signed_up}\tVerify your email" in mails
            assert "verification" in mails
            env = browser.text("#env").splitlines()
            for name, value in [
                ("STACK_API_URL", stack.backend_url),
                ("STACK_PROJECT_ID", stack.project_id),
                ("STACK_PUBLISHABLE_CLIENT_KEY", stack.publishable_client_key),
                ("STACK_SECRET_SERVER_KEY", stack.secret_server_key),
                ("NEXT_PUBLIC_STACK_API_URL", stack.backend_url),
                ("VITE_STACK_PUBLISHABLE_CLIENT_KEY", stack.publishable_client_key),
                ("EXPO_PUBLIC_STACK_PROJECT_ID", stack.project_id),
            ]:
                assert f"{name}={value}" in env, env
            assert browser.evaluate(f"{user_row(signed_up)}.cells[4].innerText") == "1"

            # Revoke the signed-up user's sessions through the form: its refresh token stops working.
            browser.click(f"{user_row(signed_up)}.querySelector('form[action$=\"/revoke-sessions\"] button')")
            assert browser.text(".notice") == "The user's sessions were revoked."
            assert browser.evaluate(f"{user_row(signed_up)}.cells[4].innerText") == "0"
            refresh = {**stack.headers("client"), "x-stack-refresh-token": refresh_token}
            assert api.post("/auth/sessions/current/refresh", headers=refresh).status_code == 401

            # Delete the server-created user through the form: the API no longer knows it.
            browser.click(f"{user_row(created)}.querySelector('form[action$=\"/delete\"] button')")
            assert browser.text(".notice") == "The user was deleted."
            assert created not in browser.text("#users")
            assert signed_up in browser.text("#users")
            r = api.get(f"/users/{b_id}", headers=server)
            assert (r.status_code, r.json()["code"]) == (404, "USER_NOT_FOUND")
            assert api.get(f"/users/{a_id}", headers=server).status_code == 200

            browser.goto(stack.dashboard_url + "/console/?project=no-such-project")
            assert "No project no-such-project" in browser.text("main")
            browser.goto(stack.dashboard_url + "/console/")
            shot = os.environ.get(SCREENSHOT_ENV)
            if shot:
                browser.screenshot(Path(shot))

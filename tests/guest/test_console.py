"""The console's pure parts: host ports as the browser sees them, the env snippet, HTML
escaping, and the answers that need no database. test_console_browser.py drives the rest."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from werkzeug.test import Client

from pytest_stack_emulator.emulator import StackEmulator

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
XSS = '<script>alert("x")</script>'


def test_host_ports_follow_the_port_the_browser_used(state: SimpleNamespace) -> None:
    from stackd.console import host_ports

    cfg = SimpleNamespace(dashboard_host_port=26700, backend_host_port=26701, inbucket_host_port=26703)
    assert host_ports("127.0.0.1:26700", cfg) == ("127.0.0.1", 26701, 26703)
    # A worker resumed from a snapshot captured on 26700 but forwarded on 26710.
    assert host_ports("localhost:26710", cfg) == ("localhost", 26711, 26713)
    assert host_ports("[::1]:26720", cfg) == ("[::1]", 26721, 26723)
    assert host_ports("example.test", cfg) == ("example.test", 26701, 26703)
    assert host_ports("127.0.0.1:99999", cfg) == ("127.0.0.1", 26701, 26703)
    assert host_ports("127.0.0.1:65535", cfg) == ("127.0.0.1", 26701, 26703)


def test_env_snippet_names_what_the_fixture_gives_an_app() -> None:
    from stackd.console import env_lines

    keys = {"publishable_client_key": "pck", "secret_server_key": "ssk", "super_secret_admin_key": "adm"}
    lines = dict(env_lines("http://127.0.0.1:26701", "internal", keys))
    handle = StackEmulator(
        ports={"dashboard": 26700, "backend": 26701, "minio": 26702, "inbucket": 26703, "mock_oauth": 26704},
        project_id="internal",
        publishable_client_key="pck",
        secret_server_key="ssk",
        super_secret_admin_key="adm",
        vm_dir=Path("/nonexistent"),
    )
    assert lines == handle.env()
    assert "adm" not in lines.values()


def test_every_value_is_escaped() -> None:
    from stackd import console

    data = {
        "users": [
            {
                "id": "u1",
                "email": XSS,
                "display_name": XSS,
                "signed_up_at": WHEN,
                "is_anonymous": False,
                "verified": True,
                "sessions": 2,
            }
        ],
        "teams": [{"id": "t1", "display_name": XSS, "created_at": WHEN}],
        "members": {"t1": [{"label": XSS}]},
        "sessions": [
            {
                "label": XSS,
                "created_at": WHEN,
                "last_used_at": WHEN,
                "expires_at": None,
                "is_impersonation": False,
            }
        ],
        "counts": {"users": 1, "teams": 1, "sessions": 1},
        "keys": {"publishable_client_key": XSS},
        "projects": [{"id": 'p"1', "display_name": XSS}],
    }
    mails = [
        {
            "id": "m1",
            "mailbox": "a/b",
            "to": [XSS],
            "subject": XSS,
            "kind": "other",
            "code": XSS,
            "link": 'javascript:"x"',
            "received_at": "2026-01-02T03:04:05.000+00:00",
        }
    ]
    html = "".join(
        [
            console.render_users(data, 'p"1', XSS),
            console.render_teams(data),
            console.render_sessions(data),
            console.render_connect(data, 'p"1', "http://h:1"),
            console.render_nav(data, 'p"1', "http://h:2/"),
            console.render_mails(mails, "http://h:2"),
        ]
    )
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'value="p&quot;1"' in html
    assert 'href="http://h:2/api/v1/mailbox/a/b/m1"' in html
    assert "2026-01-02 03:04:05 UTC" in html
    assert 'action="/console/users/u1/delete"' in html


def db_state(state: SimpleNamespace) -> SimpleNamespace:
    return SimpleNamespace(**vars(state), db_ready=threading.Event(), db_init_error="connecting")


def test_answers_that_need_no_database(state: SimpleNamespace) -> None:
    from stackd import dashboard

    client = Client(dashboard.create_app(db_state(state)))
    r = client.get("/console/")
    assert r.status_code == 503
    assert b"the database is still starting: connecting" in r.data
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    r = client.get("/console?project=x")
    assert (r.status_code, r.headers["Location"]) == (308, "/console/?project=x")
    assert client.get("/console/nothing").status_code == 404
    r = client.get("/console/users/u1/delete")
    assert (r.status_code, r.headers["Allow"]) == (405, "POST")
    r = client.post(
        "/console/users/u1/delete", data={"project": "internal"}, headers={"Origin": "http://evil.test"}
    )
    assert r.status_code == 403
    assert b"Origin http://evil.test is not http://localhost" in r.data
    # The dashboard's own pages are unchanged; its root leads to the console.
    assert client.get("/").headers["Location"] == "/console/"
    assert client.get("/handler/sign-in").status_code == 200

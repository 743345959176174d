"""Host-side unit tests of the guest's stackd services (cloud_init/.../stack-emulator/stackd).

stackd runs on the guest's Debian python3 with Debian's werkzeug, aiosmtpd and PyJWT; these
tests need the same three in the test environment (no PostgreSQL, no Redis).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

STACKD_PARENT = Path(__file__).resolve().parents[2] / "cloud_init/rootfs/usr/local/lib/stack-emulator"
sys.path.insert(0, str(STACKD_PARENT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def state(tmp_path: Path) -> SimpleNamespace:
    """What the services use of stackd.state.State: cfg and the two on-disk stores."""
    from stackd.config import Config
    from stackd.mail import MailStore
    from stackd.objectstore import ObjectStore

    cfg = Config(
        {
            "STACK_EMULATOR_SMTP_PORT": str(free_port()),
            "STACK_EMULATOR_MOCK_OAUTH_HOST_PORT": "26704",
            "STACK_EMULATOR_BACKEND_HOST_PORT": "26701",
        }
    )
    for sub in ("s3", "mail"):
        (tmp_path / sub).mkdir()
    return SimpleNamespace(
        cfg=cfg, s3=ObjectStore(str(tmp_path / "s3")), mail=MailStore(str(tmp_path / "mail"))
    )

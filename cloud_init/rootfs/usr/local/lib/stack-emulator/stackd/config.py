"""Settings from the environment (base.env and runtime.env of the runtime ISO)."""

import re
import sys

PROJECT_ID = "internal"
BRANCH_ID = "main"
DEFAULT_DB_URL = "postgresql://stack:stack-emulator@127.0.0.1:5432/stackframe"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MAIL_FROM = "noreply@stack-emulator.local"


def log(msg):
    try:
        sys.stderr.write("stackd: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def redact(text):
    """Never let a key leak into a log line or a response."""
    return re.sub(r"[0-9A-Fa-f]{32,}", "<redacted>", text)


def short_error(exc):
    lines = str(exc).strip().splitlines()
    text = redact(lines[0] if lines else "")
    return "%s: %s" % (type(exc).__name__, text[:300]) if text else type(exc).__name__


def _env_port(env, name, default):
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        log("ignoring %s=%r: not a TCP port, using %d" % (name, raw, default))
        return default
    return port


class Config:
    def __init__(self, env):
        prefix = (env.get("STACK_EMULATOR_PORT_PREFIX") or "81").strip()
        if not re.fullmatch(r"[1-9][0-9]{0,2}", prefix) or int(prefix + "02") > 65535:
            log("ignoring STACK_EMULATOR_PORT_PREFIX=%r, using 81" % prefix)
            prefix = "81"
        self.port_prefix = prefix
        self.dashboard_port = int(prefix + "01")
        self.backend_port = int(prefix + "02")
        self.s3_port = _env_port(env, "STACK_EMULATOR_S3_PORT", 9090)
        self.mail_web_port = _env_port(env, "STACK_EMULATOR_MAIL_WEB_PORT", 9001)
        self.smtp_port = _env_port(env, "STACK_EMULATOR_SMTP_PORT", 2500)
        self.oauth_port = _env_port(env, "STACK_EMULATOR_MOCK_OAUTH_HOST_PORT", 26704)
        self.dashboard_host_port = _env_port(env, "STACK_EMULATOR_DASHBOARD_HOST_PORT", 26700)
        self.backend_host_port = _env_port(env, "STACK_EMULATOR_BACKEND_HOST_PORT", 26701)
        self.inbucket_host_port = _env_port(env, "STACK_EMULATOR_INBUCKET_HOST_PORT", 26703)
        self.bind = (env.get("STACK_EMULATOR_BIND") or "0.0.0.0").strip()
        self.db_url = (env.get("STACK_EMULATOR_DATABASE_URL")
                       or env.get("STACK_DATABASE_CONNECTION_STRING") or DEFAULT_DB_URL).strip()
        self.redis_url = (env.get("STACK_EMULATOR_REDIS_URL") or DEFAULT_REDIS_URL).strip()
        self.data_dir = (env.get("STACK_EMULATOR_DATA_DIR") or env.get("STATE_DIRECTORY")
                         or "/var/lib/stack-emulator").split(":")[0]
        self.run_dir = (env.get("STACK_EMULATOR_RUN_DIR") or env.get("RUNTIME_DIRECTORY")
                        or "/run/stackd").split(":")[0]
        self.access_log = (env.get("STACK_EMULATOR_ACCESS_LOG") or "") in ("1", "true", "yes")
        self.max_object_bytes = 512 * 1024 * 1024
        self.max_mail_bytes = 32 * 1024 * 1024

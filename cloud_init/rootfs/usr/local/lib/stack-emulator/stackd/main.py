"""Start-up: listen on every port, then set up the database in the background."""

import os
import signal
import socket
import sys
import threading
import time

from . import __doc__ as PACKAGE_DOC
from .config import PROJECT_ID, Config, log, short_error
from .db import Database
from .keys import apply_env_keys
from .schema import init_schema
from .state import State

USAGE = """Usage:  python3 -m stackd             run the services
        python3 -m stackd --init-db   create the schema and (re)set the placeholder keys
"""


def db_init_loop(state, env):
    """Create the schema and apply keys from the environment once per boot; retry until it works."""
    marker = os.path.join(state.cfg.run_dir, "env-keys-applied")
    started = time.monotonic()
    while True:
        try:
            state.db.run(lambda cur: init_schema(cur, force_placeholders=False))
            if not os.path.exists(marker):
                applied = apply_env_keys(state.db, env)
                if applied:
                    log("applied keys from the environment: %s" % ", ".join(applied))
                try:
                    os.makedirs(state.cfg.run_dir, exist_ok=True)
                    with open(marker, "w") as f:
                        f.write("%d\n" % time.time())
                except OSError as exc:
                    log("cannot write %s: %s" % (marker, short_error(exc)))
            state.db_init_error = None
            state.db_ready.set()
            log("database ready")
            return
        except Exception as exc:
            message = short_error(exc)
            if message != state.db_init_error:
                log("database not ready (retrying): %s" % message)
            state.db_init_error = message
            # PostgreSQL usually starts alongside stackd at boot: poll briskly at first
            time.sleep(0.25 if time.monotonic() - started < 60 else 2)


def sd_notify(message):
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(message.encode("utf-8"))
    except OSError as exc:
        log("sd_notify failed: %s" % short_error(exc))


def init_db_cli(cfg):
    from .tokens import ensure_signing_key

    db = Database(cfg.db_url, size=1)
    try:
        db.run(lambda cur: init_schema(cur, force_placeholders=True))
        db.run(lambda cur: ensure_signing_key(cur, replace=True))
    except Exception as exc:
        log("--init-db failed: %s" % short_error(exc))
        return 1
    finally:
        db.close_all()
    print("stackd: schema ready, placeholder keys set for project %r, new signing key" % PROJECT_ID)
    return 0


def main(argv):
    if "-h" in argv or "--help" in argv:
        print(PACKAGE_DOC.strip() + "\n\n" + USAGE)
        return 0
    unknown = [a for a in argv if a not in ("--init-db",)]
    if unknown:
        print("stackd: unknown argument %s (try --help)" % unknown[0], file=sys.stderr)
        return 2
    cfg = Config(os.environ)
    if "--init-db" in argv:
        return init_db_cli(cfg)

    from functools import partial

    from . import api, contact_channels, dashboard, inbucket, oauth_provider, s3, smtp
    from .web import serve

    state = State(cfg)
    for sub in ("s3", "mail"):
        os.makedirs(os.path.join(cfg.data_dir, sub), mode=0o750, exist_ok=True)
    plan = [("dashboard", cfg.dashboard_port,
             partial(dashboard.create_app, verify_email=partial(contact_channels.verify_link, state))),
            ("backend", cfg.backend_port, api.create_app),
            ("s3", cfg.s3_port, s3.create_app),
            ("mail-web", cfg.mail_web_port, inbucket.create_app),
            ("mock-oauth", cfg.oauth_port, oauth_provider.create_app),
            ("smtp", cfg.smtp_port, None)]
    ports = [p for _, p, _ in plan]
    if len(set(ports)) != len(ports):
        log("port clash in %s: check STACK_EMULATOR_PORT_PREFIX and the *_PORT settings"
            % ", ".join("%s=%d" % (n, p) for n, p, _ in plan))
        return 1
    for name, port, factory in plan:
        try:
            if factory is None:
                smtp.start(state, cfg.bind, port)
            else:
                serve(name, cfg.bind, port, factory(state), access_log=cfg.access_log)
        except OSError as exc:
            log("cannot listen on %s:%d for %s: %s" % (cfg.bind, port, name, short_error(exc)))
            return 1

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    threading.Thread(target=db_init_loop, args=(state, dict(os.environ)), name="db-init",
                     daemon=True).start()
    log("listening: " + ", ".join("%s=%d" % (n, p) for n, p, _ in plan))
    sd_notify("READY=1\nSTATUS=listening")
    while not stop.wait(3600):
        pass
    log("stopping")
    sd_notify("STOPPING=1")
    state.db.close_all()
    sys.stderr.flush()
    os._exit(0)

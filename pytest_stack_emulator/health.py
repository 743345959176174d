"""Health checks of the guest's services over the forwarded host ports, with one deadline loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from .errors import HealthTimeout
from .manifest import Service


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def check_service(client: httpx.Client, service: Service, port: int) -> CheckResult:
    if service.health_path is None:
        return CheckResult(service.name, True, "no health check")
    url = f"http://127.0.0.1:{port}{service.health_path}"
    try:
        r = client.get(url)
    except httpx.HTTPError as exc:
        return CheckResult(service.name, False, f"GET {url}: {type(exc).__name__}")
    if r.status_code != service.health_status:
        return CheckResult(service.name, False, f"GET {url}: HTTP {r.status_code}")
    if service.health_body is not None:
        try:
            body = r.json()
        except ValueError:
            body = r.text
        if body != service.health_body:
            return CheckResult(service.name, False, f"GET {url}: body {r.text[:100]!r}")
    return CheckResult(service.name, True, f"GET {url}: HTTP {r.status_code}")


def wait_healthy(
    services: tuple[Service, ...],
    ports: Mapping[str, int],
    timeout: float,
    *,
    what: str = "services",
    alive: Callable[[], bool] | None = None,
    on_progress: Callable[[str], None] | None = None,
    interval: float = 0.05,
    timeout_option: str = "--stack-emulator-boot-timeout",
) -> float:
    """Poll every service until all are healthy. Returns the seconds it took.

    Raises :class:`HealthTimeout` naming each service still failing and how.
    """
    started = time.monotonic()
    deadline = started + timeout
    pending = {s.name: s for s in services}
    last: dict[str, CheckResult] = {}
    reported = started
    with httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0)) as client:
        while True:
            for name, service in list(pending.items()):
                result = check_service(client, service, ports[name])
                last[name] = result
                if result.ok:
                    del pending[name]
            now = time.monotonic()
            if not pending:
                return now - started
            if alive is not None and not alive():
                raise HealthTimeout(
                    f"QEMU exited while waiting for {what}; still failing: "
                    + "; ".join(last[n].detail for n in pending)
                )
            if now > deadline:
                raise HealthTimeout(
                    f"{what} not healthy after {timeout:.0f} s. Still failing: "
                    + "; ".join(last[n].detail for n in pending)
                    + ". Look at serial.log in the VM directory; raise the timeout with "
                    f"{timeout_option} if the machine is slow."
                )
            if on_progress and now - reported > 10:
                reported = now
                on_progress(f"waiting for {', '.join(sorted(pending))} ({now - started:.0f} s)")
            time.sleep(interval)

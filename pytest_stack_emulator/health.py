"""Health checks of the guest's services over the forwarded host ports, with one deadline loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from .errors import HealthTimeout
from .manifest import Service
from .wait import Deadline, poll


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


def check_services(checks: Sequence[tuple[Service, int]], timeout: float = 2.0) -> list[CheckResult]:
    """Check each service (on its host port) once, all at the same time."""
    with (
        httpx.Client(timeout=httpx.Timeout(timeout, connect=1.0)) as client,
        ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool,
    ):
        return list(pool.map(lambda check: check_service(client, *check), checks))


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
    deadline = Deadline(timeout)
    pending = {s.name: s for s in services}
    last: dict[str, CheckResult] = {}
    reported = 0.0

    def still_failing() -> str:
        """Each unhealthy service by name, with its URL and how it failed."""
        return "; ".join(f"{n} ({last[n].detail})" for n in sorted(pending))

    def tick(elapsed: float) -> None:
        nonlocal reported
        if on_progress and elapsed - reported > 10:
            reported = elapsed
            on_progress(f"waiting for {', '.join(sorted(pending))} ({elapsed:.0f} s)")

    with httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0)) as client:

        def all_healthy() -> float | None:
            for name, service in list(pending.items()):
                result = check_service(client, service, ports[name])
                last[name] = result
                if result.ok:
                    del pending[name]
            return None if pending else deadline.elapsed()

        return poll(
            all_healthy,
            deadline,
            what=what,
            interval=interval,
            alive=alive,
            on_exit=lambda: HealthTimeout(
                f"QEMU exited while waiting for {what}; still failing: " + still_failing()
            ),
            on_timeout=lambda: HealthTimeout(
                f"{what} not healthy after {timeout:.0f} s. Still failing: "
                + still_failing()
                + ". Look at serial.log in the VM directory; raise the timeout with "
                f"{timeout_option} if the machine is slow."
            ),
            on_tick=tick,
        )

"""The image manifest (CONTRACT §5.3): what a VM image promises, as JSON beside the image.

An image built here gets its manifest from the builder. The upstream image gets
:func:`upstream_manifest`, which restates CONTRACT §1 to §4.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .arch import ARCHES, guest_arch
from .contract import (
    INBUCKET_GUEST_PORT,
    INTERNAL_PROJECT_ID,
    MINIO_GUEST_PORT,
    PLACEHOLDER_KEYS,
    PORT_PREFIX,
    SERVICE_NAMES,
)
from .errors import ImageError

__all__ = [
    "LAYOUT_VERSION",
    "PLACEHOLDER_KEYS",
    "Boot",
    "Manifest",
    "Service",
    "stack_services",
    "upstream_manifest",
]

MANIFEST_VERSION = 1
# Bump when the device layout built by argv.build_argv changes: snapshots are keyed on it.
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class Service:
    """A forwarded guest service. ``guest_port`` None means: the same number as its host port."""

    name: str
    guest_port: int | None
    health_path: str | None
    health_status: int = 200
    health_body: Any = None


@dataclass(frozen=True)
class Boot:
    """``kernel``: direct kernel boot with files beside the image; ``firmware``: boot the disk."""

    method: str
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    arch: str
    disk: str
    ram_mb: int
    vcpus: int
    boot: Boot
    services: tuple[Service, ...]
    keys: dict[str, str] = field(default_factory=lambda: dict(PLACEHOLDER_KEYS))
    project_id: str = INTERNAL_PROJECT_ID
    machine: str = "q35"
    layout: dict[str, Any] = field(
        default_factory=lambda: {
            "version": LAYOUT_VERSION,
            "drives": ["disk", "seed", "bundle", "runtime"],
            "hostfs_port": "hostfs-port",
            "qga": True,
        }
    )
    inputs_hash: str | None = None
    digest: str | None = None
    created: str | None = None
    version: int = MANIFEST_VERSION

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def with_digest(self, digest: str) -> Manifest:
        return replace(self, digest=digest)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """A manifest from its JSON form; :class:`FieldError` names the first bad field."""
        if not isinstance(data, dict):
            raise FieldError("(top level)", "must be a JSON object")
        data = dict(data)
        # Manifests written before 2026-11 carry an unused "port_prefix" (always "81").
        data.pop("port_prefix", None)
        check_fields(data)
        # Without a machine type, the architecture's own (q35 would not start an arm64 guest).
        data.setdefault("machine", guest_arch(data["arch"]).machine)
        data["boot"] = Boot(**data["boot"])
        data["services"] = tuple(Service(**s) for s in data["services"])
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        fix = "Fix that field, or rebuild the image with `stack-emulator build-image --force`."
        try:
            data = json.loads(path.read_text())
            manifest = cls.from_dict(data)
        except FileNotFoundError:
            raise ImageError(f"image manifest {path} does not exist") from None
        except FieldError as exc:
            raise ImageError(f"image manifest {path} is not valid: {exc}. {fix}") from None
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
            raise ImageError(
                f"image manifest {path} is not valid: it cannot be read as JSON ({exc}). Rebuild the "
                "image with `stack-emulator build-image --force` or remove that file."
            ) from None
        if manifest.version != MANIFEST_VERSION:
            raise ImageError(
                f"image manifest {path} has version {manifest.version}, this plugin reads "
                f"version {MANIFEST_VERSION}. Rebuild the image with `stack-emulator build-image`."
            )
        return manifest


class FieldError(ValueError):
    """A manifest field that is missing, unknown or of the wrong kind."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"field `{name}` {problem}")


def _int_in(low: int, high: int) -> Callable[[object], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _text(v: object) -> bool:
    return isinstance(v, str) and v != ""


def _text_or_null(v: object) -> bool:
    return v is None or isinstance(v, str)


def _port_or_null(v: object) -> bool:
    return v is None or _int_in(1, 65535)(v)


def _path_or_null(v: object) -> bool:
    return v is None or (isinstance(v, str) and v.startswith("/"))


def _keys(v: object) -> bool:
    return isinstance(v, dict) and all(isinstance(v.get(k), str) for k in PLACEHOLDER_KEYS)


def _one_of(*choices: object) -> Callable[[object], bool]:
    return lambda v: v in choices


# Per field: the check and what it asks for. Fields marked required must be present.
_TOP: dict[str, tuple[bool, Callable[[object], bool], str]] = {
    "name": (True, _text, "a non-empty string"),
    "arch": (True, _one_of(*ARCHES), " or ".join(f'"{a}"' for a in ARCHES)),
    "disk": (True, _text, "the disk's file name"),
    "ram_mb": (True, _int_in(128, 1 << 20), "a whole number of MiB, 128 or more"),
    "vcpus": (True, _int_in(1, 512), "a whole number from 1 to 512"),
    "boot": (True, lambda v: isinstance(v, dict), "an object"),
    "services": (True, lambda v: isinstance(v, list), "a list of services"),
    "keys": (False, _keys, "an object with " + ", ".join(PLACEHOLDER_KEYS)),
    "project_id": (False, _text, "a non-empty string"),
    "machine": (False, _text, "a QEMU machine type"),
    "layout": (False, lambda v: isinstance(v, dict), "an object"),
    "inputs_hash": (False, _text_or_null, "a string or null"),
    "digest": (False, _text_or_null, "a string or null"),
    "created": (False, _text_or_null, "a string or null"),
    "version": (False, _int_in(0, 1 << 30), "a whole number"),
}
_BOOT: dict[str, tuple[bool, Callable[[object], bool], str]] = {
    "method": (True, _one_of("kernel", "firmware"), '"kernel" or "firmware"'),
    "kernel": (False, _text_or_null, "a file name beside the disk"),
    "initrd": (False, _text_or_null, "a file name beside the disk"),
    "append": (False, _text_or_null, "a kernel command line"),
}
_SERVICE: dict[str, tuple[bool, Callable[[object], bool], str]] = {
    "name": (True, _one_of(*SERVICE_NAMES), "one of " + ", ".join(SERVICE_NAMES)),
    "guest_port": (True, _port_or_null, "a port number, or null for the host port's number"),
    "health_path": (True, _path_or_null, 'a path starting with "/", or null'),
    "health_status": (False, _int_in(100, 599), "an HTTP status"),
    "health_body": (False, lambda v: True, "any JSON value"),
}


def _check(
    data: dict[str, Any], rules: dict[str, tuple[bool, Callable[[object], bool], str]], where: str
) -> None:
    for name in sorted(set(data) - set(rules)):
        raise FieldError(where + name, "is not a field this plugin knows (misspelt?)")
    for name, (required, ok, wanted) in rules.items():
        if name not in data:
            if required:
                raise FieldError(where + name, "is missing")
        elif not ok(data[name]):
            raise FieldError(where + name, f"must be {wanted}, not {json.dumps(data[name])[:60]}")


def check_fields(data: dict[str, Any]) -> None:
    """Check every field a VM depends on, so that a bad manifest fails here, naming the field."""
    _check(data, _TOP, "")
    _check(data["boot"], _BOOT, "boot.")
    if data["boot"]["method"] == "kernel":
        for name in ("kernel", "initrd"):
            if not _text(data["boot"].get(name)):
                raise FieldError(f"boot.{name}", 'must name a file beside the disk (boot.method is "kernel")')
    for i, service in enumerate(data["services"]):
        if not isinstance(service, dict):
            raise FieldError(f"services[{i}]", "must be an object")
        _check(service, _SERVICE, f"services[{i}].")
    names = sorted(service["name"] for service in data["services"])
    if names != sorted(SERVICE_NAMES):
        raise FieldError("services", f"must list each of {', '.join(SERVICE_NAMES)} once, not {names}")


def stack_services(prefix: str = PORT_PREFIX, mock_oauth_health: str | None = None) -> tuple[Service, ...]:
    return (
        Service("dashboard", int(f"{prefix}01"), "/handler/sign-in"),
        Service("backend", int(f"{prefix}02"), "/health?db=1", 200, {"status": "ok"}),
        Service("minio", MINIO_GUEST_PORT, "/minio/health/live"),
        Service("inbucket", INBUCKET_GUEST_PORT, "/"),
        Service("mock_oauth", None, mock_oauth_health),
    )


def upstream_manifest(arch: str = "amd64") -> Manifest:
    """The built-in manifest of upstream's ``stack-emulator-<arch>.qcow2`` (CONTRACT §1-4)."""
    return Manifest(
        name="upstream",
        arch=arch,
        disk=f"stack-emulator-{arch}.qcow2",
        ram_mb=4096,
        vcpus=4,
        boot=Boot(method="firmware"),
        services=stack_services(PORT_PREFIX),
        machine=guest_arch(arch).machine,
    )

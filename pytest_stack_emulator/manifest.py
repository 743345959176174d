"""The image manifest (CONTRACT §5.3): what a VM image promises, as JSON beside the image.

An image built here gets its manifest from the builder. The upstream image gets
:func:`upstream_manifest`, which restates CONTRACT §1 to §4.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .contract import (
    INBUCKET_GUEST_PORT,
    INTERNAL_PROJECT_ID,
    MINIO_GUEST_PORT,
    PLACEHOLDER_KEYS,
    PORT_PREFIX,
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
        data = dict(data)
        # Manifests written before 2026-11 carry an unused "port_prefix" (always "81").
        data.pop("port_prefix", None)
        data["boot"] = Boot(**data["boot"])
        data["services"] = tuple(Service(**s) for s in data["services"])
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(path.read_text())
            manifest = cls.from_dict(data)
        except FileNotFoundError:
            raise ImageError(f"image manifest {path} does not exist") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise ImageError(
                f"image manifest {path} is not valid ({exc}). Rebuild the image with "
                "`stack-emulator build-image --force` or remove that file."
            ) from None
        if manifest.version != MANIFEST_VERSION:
            raise ImageError(
                f"image manifest {path} has version {manifest.version}, this plugin reads "
                f"version {MANIFEST_VERSION}. Rebuild the image with `stack-emulator build-image`."
            )
        return manifest


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
        machine="q35" if arch == "amd64" else "virt",
    )

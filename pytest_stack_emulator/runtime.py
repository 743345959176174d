"""What the host hands a guest at boot: the STACKCFG ISO contents (CONTRACT §2)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .contract import INTERNAL_PROJECT_ID, KEY_ENV_NAMES, PLACEHOLDER_KEYS, PORT_PREFIX
from .errors import ImageError
from .ports import DEFAULT_BASE_PORT, block_ports


def runtime_env(host_ports: Mapping[str, int] | None, vm_dir_host: Path | None) -> dict[str, str]:
    """``runtime.env``. ``vm_dir_host`` is None while capturing: no host files are attached."""
    ports = dict(host_ports) if host_ports else block_ports(DEFAULT_BASE_PORT)
    return {
        "STACK_EMULATOR_PORT_PREFIX": PORT_PREFIX,
        "STACK_EMULATOR_DASHBOARD_HOST_PORT": str(ports["dashboard"]),
        "STACK_EMULATOR_BACKEND_HOST_PORT": str(ports["backend"]),
        "STACK_EMULATOR_MINIO_HOST_PORT": str(ports["minio"]),
        "STACK_EMULATOR_INBUCKET_HOST_PORT": str(ports["inbucket"]),
        "STACK_EMULATOR_MOCK_OAUTH_HOST_PORT": str(ports["mock_oauth"]),
        "STACK_EMULATOR_VM_DIR_HOST": str(vm_dir_host) if vm_dir_host else "",
    }


def base_env_file(disk: Path) -> Path:
    """Where an image's own ``base.env`` is kept: beside its disk (``pull`` writes it)."""
    return disk.with_name(disk.name + ".base.env")


def image_base_env(manifest_name: str, disk: Path) -> Mapping[str, str] | bytes:
    """``base.env`` for an image: the file kept beside its disk, as it is; else, for images
    built here, :func:`base_env`. An upstream image without its file is an error: upstream's
    backend reads its own variables from it, and no stand-in matches them."""
    path = base_env_file(disk)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    if manifest_name == "upstream":
        raise ImageError(
            f"{disk} is an upstream image and {path} is missing: upstream's base environment (its "
            "docker/local-emulator/.env.development) goes there. `stack-emulator pull --tag <tag>` "
            "fetches the image with it; or write that tag's file to that path."
        )
    return base_env()


def base_env() -> dict[str, str]:
    """``base.env`` of the images built here: the backend's base environment. Internal
    services only; no real secrets."""
    return {
        "NEXT_PUBLIC_STACK_IS_LOCAL_EMULATOR": "true",
        "STACK_DATABASE_CONNECTION_STRING": "postgresql://stack:stack-emulator@127.0.0.1:5432/stackframe",
        "STACK_REDIS_URL": "redis://127.0.0.1:6379/0",
        "STACK_S3_ENDPOINT": "http://127.0.0.1:9090",
        "STACK_S3_REGION": "us-east-1",
        "STACK_S3_BUCKET": "stack-storage",
        "STACK_EMAIL_HOST": "127.0.0.1",
        "STACK_EMAIL_PORT": "2500",
        "STACK_EMAIL_SENDER": "noreply@stack-emulator.local",
        "STACK_INTERNAL_PROJECT_ID": INTERNAL_PROJECT_ID,
        **{KEY_ENV_NAMES[kind]: key for kind, key in PLACEHOLDER_KEYS.items()},
    }

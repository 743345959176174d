"""The guest contract as the host reads it (CONTRACT §1-4): services, ports, keys, commands.

Host modules take these names and numbers from here, runtime.py included (it writes them onto
the runtime ISO). The guest scripts under ``cloud_init/`` keep their own copies, so a change
here must be made there too; the compat image's input hash covers this module, so such a
change rebuilds the image.
"""

from __future__ import annotations

# The forwarded services, in port-block order (dashboard = block + 0, backend = block + 1, ...).
SERVICE_NAMES = ("dashboard", "backend", "minio", "inbucket", "mock_oauth")
# Guest ports of the dashboard and the backend are this prefix + 01 and + 02 (CONTRACT §1).
PORT_PREFIX = "81"
MINIO_GUEST_PORT = 9090
INBUCKET_GUEST_PORT = 9001

INTERNAL_PROJECT_ID = "internal"
# The key names the host uses, and the guest environment variable each one sets (CONTRACT §4).
KEY_ENV_NAMES = {
    "publishable_client_key": "STACK_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY",
    "secret_server_key": "STACK_INTERNAL_PROJECT_SECRET_SERVER_KEY",
    "super_secret_admin_key": "STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY",
    "cron_secret": "CRON_SECRET",
}
# The keys an image is captured with; rotation replaces them.
PLACEHOLDER_KEYS = {
    "publishable_client_key": "00000000000000000000000000000000ffffffffffffffffffffffffffffffff",
    "secret_server_key": "00000000000000000000000000000000eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
    "super_secret_admin_key": "00000000000000000000000000000000dddddddddddddddddddddddddddddddd",
    "cron_secret": "00000000000000000000000000000000cccccccccccccccccccccccccccccccc",
}

# Guest commands run over QGA.
ROTATE_COMMAND = "/usr/local/bin/trigger-fast-rotate"
MOUNT_HOST_FS_COMMAND = "/usr/local/bin/mount-host-fs"

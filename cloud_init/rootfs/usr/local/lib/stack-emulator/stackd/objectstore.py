"""The S3 service's objects on disk (no HTTP here: s3.py serves them).

<root>/<bucket>/ is a bucket. An object is <sha256(key)>.data (its bytes) next to
<sha256(key)>.meta (JSON: key, size, etag, content type, user metadata...), so no key ever
reaches a file path. A put streams to a temporary file and renames it into place.
"""

import contextlib
import hashlib
import json
import os
import re
import threading
import time
import uuid

BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
CHUNK = 64 * 1024


class TooLarge(Exception):
    """A put went past its size limit; the previous object (if any) is left in place."""


class ObjectStore:
    """Objects as <root>/<bucket>/<sha256(key)>.data + .meta (JSON with the key): no key reaches a path."""

    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()

    @staticmethod
    def valid_bucket(name):
        return bool(BUCKET_RE.fullmatch(name)) and ".." not in name

    def bucket_dir(self, bucket):
        return os.path.join(self.root, bucket)

    def bucket_exists(self, bucket):
        return os.path.isdir(self.bucket_dir(bucket))

    def paths(self, bucket, key):
        base = os.path.join(self.bucket_dir(bucket), hashlib.sha256(key.encode("utf-8")).hexdigest())
        return base + ".data", base + ".meta"

    def list_buckets(self):
        """[(name, creation time)], sorted by name."""
        out = []
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name)
            if self.valid_bucket(name) and os.path.isdir(path):
                out.append((name, os.stat(path).st_mtime))
        return out

    def create_bucket(self, bucket):
        os.makedirs(self.bucket_dir(bucket), mode=0o750, exist_ok=True)

    def delete_bucket(self, bucket):
        """False when the bucket still holds objects."""
        path = self.bucket_dir(bucket)
        with self.lock:
            if any(n.endswith(".meta") for n in os.listdir(path)):
                return False
            for name in os.listdir(path):
                os.unlink(os.path.join(path, name))
            os.rmdir(path)
        return True

    def head(self, bucket, key):
        try:
            with open(self.paths(bucket, key)[1], "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

    def open(self, bucket, key):
        """(meta, open data file), or (None, None): both from the same version of the object."""
        data_path, meta_path = self.paths(bucket, key)
        with self.lock:
            try:
                with open(meta_path, "rb") as f:
                    meta = json.loads(f.read())
                return meta, open(data_path, "rb")
            except FileNotFoundError:
                return None, None

    def put(self, bucket, key, stream, limit, content_type, user_meta, extra=None):
        """Stream stream.read() to the object (replacing it atomically); return its meta.

        Raises TooLarge past limit bytes."""
        data_path, meta_path = self.paths(bucket, key)
        tmp = "%s.%s.tmp" % (data_path, uuid.uuid4().hex)
        md5, size = hashlib.md5(), 0
        try:
            with open(tmp, "wb") as out:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge("object larger than %d bytes" % limit)
                    md5.update(chunk)
                    out.write(chunk)
            meta = {"key": key, "size": size, "etag": md5.hexdigest(), "content_type": content_type,
                    "last_modified": time.time(), "user_meta": user_meta}
            meta.update(extra or {})
            meta_tmp = meta_path + "." + uuid.uuid4().hex + ".tmp"
            with open(meta_tmp, "w", encoding="utf-8") as f:
                json.dump(meta, f)
            with self.lock:
                os.replace(tmp, data_path)
                os.replace(meta_tmp, meta_path)
            return meta
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def delete(self, bucket, key):
        data_path, meta_path = self.paths(bucket, key)
        with self.lock:
            for path in (meta_path, data_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def keys(self, bucket):
        """The meta of every object of the bucket, sorted by key."""
        out = []
        path = self.bucket_dir(bucket)
        for name in os.listdir(path):
            if name.endswith(".meta"):
                try:
                    with open(os.path.join(path, name), "rb") as f:
                        out.append(json.loads(f.read()))
                except (OSError, ValueError):
                    continue
        out.sort(key=lambda m: m["key"])
        return out

"""The S3 service: its object store on disk, its XML listings and the WSGI app."""

from __future__ import annotations

import hashlib
import io
import os
import xml.etree.ElementTree as ET
from types import SimpleNamespace
from typing import Any

import pytest
from werkzeug.test import Client

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def put(store: Any, bucket: str, key: str, data: bytes, limit: int = 1 << 20) -> dict[str, Any]:
    meta: dict[str, Any] = store.put(
        bucket, key, io.BytesIO(data), limit, "text/plain", {"x-amz-meta-a": "1"}
    )
    return meta


def test_object_store_round_trip(state: SimpleNamespace) -> None:
    from stackd.objectstore import TooLarge

    store = state.s3
    store.create_bucket("bucket-a")
    assert [name for name, _ in store.list_buckets()] == ["bucket-a"]
    meta = put(store, "bucket-a", "dir/../x.txt", b"hello")
    assert meta["etag"] == hashlib.md5(b"hello").hexdigest()
    assert (meta["key"], meta["size"], meta["content_type"]) == ("dir/../x.txt", 5, "text/plain")
    # no key reaches a path: <sha256(key)>.data and .meta
    digest = hashlib.sha256(b"dir/../x.txt").hexdigest()
    assert sorted(os.listdir(os.path.join(store.root, "bucket-a"))) == [digest + ".data", digest + ".meta"]
    got, f = store.open("bucket-a", "dir/../x.txt")
    with f:
        assert (got, f.read()) == (meta, b"hello")
    with pytest.raises(TooLarge):
        put(store, "bucket-a", "dir/../x.txt", b"x" * 11, limit=10)
    assert store.head("bucket-a", "dir/../x.txt") == meta  # the old object stays
    assert len(os.listdir(os.path.join(store.root, "bucket-a"))) == 2  # no temporary file left
    put(store, "bucket-a", "a", b"")
    assert [m["key"] for m in store.keys("bucket-a")] == ["a", "dir/../x.txt"]
    assert not store.delete_bucket("bucket-a")
    store.delete("bucket-a", "a")
    store.delete("bucket-a", "dir/../x.txt")
    assert store.open("bucket-a", "a") == (None, None)
    assert store.delete_bucket("bucket-a")
    assert store.list_buckets() == []


@pytest.mark.parametrize("name", ["ab", "a_b", "-ab", "a..b", "A-bucket", "x" * 64])
def test_invalid_bucket_names(name: str) -> None:
    from stackd.objectstore import ObjectStore

    assert not ObjectStore.valid_bucket(name)


def listing(keys: list[str], **args: str) -> ET.Element:
    from stackd.s3 import list_objects_xml

    metas = [{"key": k, "size": 1, "etag": "e", "last_modified": 0.0} for k in sorted(keys)]
    return ET.fromstring(list_objects_xml("b", metas, args))


def texts(root: ET.Element, path: str) -> list[str]:
    """The texts at path ("Contents/Key"), each step in the S3 namespace."""
    return [el.text or "" for el in root.iterfind("/".join(NS + step for step in path.split("/")))]


KEYS = ["a/1", "a/2", "b/1", "c", "d"]


def test_listing_with_a_delimiter_groups_common_prefixes() -> None:
    root = listing(KEYS, delimiter="/")
    assert texts(root, "Contents/Key") == ["c", "d"]
    assert texts(root, "CommonPrefixes/Prefix") == ["a/", "b/"]
    assert texts(root, "IsTruncated") == ["false"]
    assert texts(root, "Contents/LastModified") == ["1970-01-01T00:00:00.000Z"] * 2
    root = listing(KEYS, prefix="a/", delimiter="/")
    assert texts(root, "Contents/Key") == ["a/1", "a/2"]


def test_v1_pages_with_markers() -> None:
    root = listing(KEYS, delimiter="/", **{"max-keys": "2"})
    assert texts(root, "CommonPrefixes/Prefix") == ["a/", "b/"]
    assert texts(root, "NextMarker") == ["b/"]
    root = listing(KEYS, delimiter="/", marker="b/", **{"max-keys": "2"})
    assert texts(root, "Contents/Key") == ["c", "d"]
    assert texts(root, "IsTruncated") == ["false"]


def test_v2_pages_with_continuation_tokens() -> None:
    seen, token = [], None
    while True:
        args = {"list-type": "2", "max-keys": "2"}
        if token:
            args["continuation-token"] = token
        root = listing(KEYS, **args)
        assert texts(root, "KeyCount") == [str(len(texts(root, "Contents/Key")))]
        seen += texts(root, "Contents/Key")
        if texts(root, "IsTruncated") == ["false"]:
            break
        (token,) = texts(root, "NextContinuationToken")
    assert seen == KEYS
    root = listing(KEYS, **{"list-type": "2", "start-after": "b/1"})
    assert texts(root, "Contents/Key") == ["c", "d"]


def test_listing_url_encoding_and_bad_arguments() -> None:
    from stackd.s3 import S3Error

    root = listing(["a b/ü&"], **{"encoding-type": "url"})
    assert texts(root, "Contents/Key") == ["a%20b/%C3%BC%26"]
    with pytest.raises(S3Error):
        listing(KEYS, **{"max-keys": "x"})
    with pytest.raises(S3Error):
        listing(KEYS, **{"list-type": "2", "continuation-token": "_w"})  # not UTF-8


def aws_chunked(data: bytes, size: int, trailer: bytes = b"") -> bytes:
    out = b""
    for i in range(0, len(data), size):
        part = data[i : i + size]
        out += b"%x;chunk-signature=%s\r\n" % (len(part), b"0" * 64) + part + b"\r\n"
    return out + b"0;chunk-signature=" + b"0" * 64 + b"\r\n" + trailer + b"\r\n"


@pytest.mark.parametrize("trailer", [b"", b"x-amz-checksum-crc32:AAAAAA==\r\n"])
def test_aws_chunked_bodies_are_decoded(trailer: bytes) -> None:
    from stackd.awschunked import AwsChunkedReader

    data = os.urandom(300_000)
    reader = AwsChunkedReader(io.BytesIO(aws_chunked(data, 70_000, trailer)))
    got = b"".join(iter(lambda: reader.read(50_000), b""))
    assert got == data


@pytest.mark.parametrize("body", [b"zz\r\n", b"5\r\nabc", b"3\r\nabcXX\r\n0\r\n\r\n", b"-1\r\n", b"3\r\nab"])
def test_malformed_aws_chunked_bodies_are_refused(body: bytes) -> None:
    from stackd.awschunked import AwsChunkedReader, MalformedBody

    reader = AwsChunkedReader(io.BytesIO(body))
    with pytest.raises(MalformedBody):
        b"".join(iter(reader.read, b""))


@pytest.fixture
def client(state: SimpleNamespace) -> Client:
    from stackd import s3

    return Client(s3.create_app(state))


def error_code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


def test_s3_app_round_trip(client: Client) -> None:
    assert client.get("/minio/health/live").status_code == 200
    r = client.put("/bucket-a")
    assert (r.status_code, r.headers["Location"]) == (200, "/bucket-a")
    assert client.head("/bucket-a").status_code == 200
    r = client.put("/bucket-a/dir/file.txt", data=b"hello s3", headers={"x-amz-meta-color": "blue"})
    assert (r.status_code, r.headers["ETag"]) == (200, f'"{hashlib.md5(b"hello s3").hexdigest()}"')
    r = client.get("/bucket-a/dir/file.txt")
    assert (r.data, r.headers["x-amz-meta-color"], r.headers["Accept-Ranges"]) == (
        b"hello s3",
        "blue",
        "bytes",
    )
    assert r.headers["Content-Type"] == "binary/octet-stream"
    r = client.head("/bucket-a/dir/file.txt")
    assert (r.data, r.headers["Content-Length"]) == (b"", "8")
    r = client.get("/bucket-a/dir/file.txt", headers={"Range": "bytes=6-"})
    assert (r.status_code, r.data, r.headers["Content-Range"]) == (206, b"s3", "bytes 6-7/8")
    assert client.get("/bucket-a/dir/file.txt", headers={"Range": "bytes=-2"}).data == b"s3"
    r = client.get("/bucket-a/dir/file.txt", headers={"Range": "bytes=8-"})
    assert (r.status_code, r.headers["Content-Range"]) == (416, "bytes */8")
    r = client.put("/bucket-a/copy", headers={"x-amz-copy-source": "/bucket-a/dir%2Ffile.txt"})
    assert (r.status_code, ET.fromstring(r.data).tag) == (200, "CopyObjectResult")
    assert client.get("/bucket-a/copy").headers["x-amz-meta-color"] == "blue"
    r = client.get("/bucket-a", query_string={"list-type": "2", "prefix": "dir/"})
    assert texts(ET.fromstring(r.data), "Contents/Key") == ["dir/file.txt"]
    assert client.get("/", headers={"Host": "bucket-a.localhost:9090"}).status_code == 200
    r = client.post("/bucket-a?delete", data=b"<Delete><Object><Key>copy</Key></Object></Delete>")
    assert texts(ET.fromstring(r.data), "Deleted/Key") == ["copy"]
    assert client.delete("/bucket-a/dir/file.txt").status_code == 204
    assert client.delete("/bucket-a").status_code == 204
    buckets = ET.fromstring(client.get("/").data)
    assert texts(buckets, "Buckets/Bucket/Name") == []


def test_s3_app_errors_are_xml(client: Client) -> None:
    client.put("/bucket-a")
    client.put("/bucket-a/k", data=b"v")
    cases = [
        (client.get("/bucket-a/missing"), 404, "NoSuchKey"),
        (client.put("/nobucket/k", data=b"v"), 404, "NoSuchBucket"),
        (client.get("/nobucket"), 404, "NoSuchBucket"),
        (client.put("/Bad_Bucket"), 400, "InvalidBucketName"),
        (client.delete("/bucket-a"), 409, "BucketNotEmpty"),
        (client.patch("/bucket-a/k"), 405, "MethodNotAllowed"),
        (client.post("/bucket-a/k?uploads"), 501, "NotImplemented"),
        (client.post("/bucket-a?delete", data=b"<not xml"), 400, "MalformedXML"),
        (client.put("/bucket-a/" + "k" * 1025, data=b"v"), 400, "KeyTooLongError"),
        (
            client.put("/bucket-a/k", data=b"zz\r\n", headers={"Content-Encoding": "aws-chunked"}),
            400,
            "IncompleteBody",
        ),
    ]
    for r, status, code in cases:
        assert (r.status_code, error_code(r.data)) == (status, code)
        assert r.headers["Content-Type"] == "application/xml"
    assert client.patch("/bucket-a/k").headers["Allow"] == "GET, HEAD, PUT, DELETE"


def test_s3_app_refuses_objects_over_the_limit(state: SimpleNamespace) -> None:
    from stackd import s3

    state.cfg.max_object_bytes = 10
    client = Client(s3.create_app(state))
    client.put("/bucket-a")
    r = client.put("/bucket-a/k", data=b"x" * 11)
    assert (r.status_code, error_code(r.data)) == (413, "EntityTooLarge")
    r = client.put(
        "/bucket-a/k",
        data=aws_chunked(b"x" * 11, 4),
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        },
    )
    assert (r.status_code, error_code(r.data)) == (413, "EntityTooLarge")
    r = client.put(
        "/bucket-a/k",
        data=aws_chunked(b"0123456789", 4),
        headers={
            "Content-Encoding": "aws-chunked,gzip",
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        },
    )
    assert r.status_code == 200
    r = client.get("/bucket-a/k")
    assert (r.data, r.headers["Content-Encoding"]) == (b"0123456789", "gzip")

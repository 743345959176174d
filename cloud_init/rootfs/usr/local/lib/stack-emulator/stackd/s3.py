"""The S3 service (port 9090): a path-style subset of the S3 API on a directory tree.

Buckets: list, create, head, delete, list objects (v1 and v2), multi-object delete.
Objects: put (plain, chunked or aws-chunked bodies, streamed to disk), copy, get (with a
Range), head, delete. Errors are S3 XML. No multipart uploads, no authentication check.
"""

import base64
import contextlib
import re
import traceback
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from email.utils import formatdate
from html import escape

from werkzeug.exceptions import ClientDisconnected, HTTPException
from werkzeug.wrappers import Request, Response

from .awschunked import AwsChunkedReader, MalformedBody
from .config import log
from .objectstore import ObjectStore, TooLarge
from .web import drain

__all__ = ["ObjectStore", "S3App", "create_app"]

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
SMALL_BODY = 1024 * 1024          # the most read of a body that is not an object
CHUNK = 64 * 1024


class S3Error(Exception):
    def __init__(self, status, code, message, headers=()):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


def no_such_bucket():
    return S3Error(404, "NoSuchBucket", "the specified bucket does not exist")


def iso_date(ts):
    return (datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            + "%03dZ" % (int(ts * 1000) % 1000))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class BodyStream:
    """A request body whose bad HTTP chunk framing is a client error, not an internal one."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, size=CHUNK):
        try:
            return self.stream.read(size)
        except (ConnectionError, TimeoutError):
            raise
        except OSError:  # werkzeug's DechunkedInput on a malformed chunk
            raise MalformedBody("malformed chunked request body") from None


def xml_response(body, status=200, headers=()):
    return Response(XML_HEAD + body, status=status, headers=list(headers),
                    content_type="application/xml")


def empty_response(status=200, headers=()):
    response = Response(b"", status=status, headers=list(headers))
    del response.headers["Content-Type"]
    return response


def error_response(exc, resource):
    body = ("<Error><Code>%s</Code><Message>%s</Message><Resource>%s</Resource>"
            "<RequestId>%s</RequestId></Error>"
            % (exc.code, escape(exc.message), escape(resource), uuid.uuid4().hex[:16]))
    return xml_response(body, exc.status, exc.headers)


class S3App:
    def __init__(self, state):
        self.store = state.s3
        self.max_object_bytes = state.cfg.max_object_bytes

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.route(request)
        except S3Error as exc:
            response = error_response(exc, request.path)
        except ClientDisconnected:
            raise ConnectionError("the client closed the connection in the request body") from None
        except (ConnectionError, TimeoutError):
            raise  # the client went away: the server drops the connection
        except Exception:
            log("s3: internal error on %s %s:\n%s" % (request.method, request.path[:200],
                                                      traceback.format_exc()))
            response = error_response(S3Error(500, "InternalError", "internal error in the emulator "
                                              "(see the guest journal)"), request.path)
        discard_body(request)
        return response(environ, start_response)

    def route(self, request):
        path, method = request.path, request.method
        if path.startswith("/minio/health/"):
            if method not in ("GET", "HEAD"):
                raise method_not_allowed(method, ["GET", "HEAD"])
            return empty_response()
        bucket, key = split_target(request)
        if not bucket:
            if method not in ("GET", "HEAD"):
                raise method_not_allowed(method, ["GET", "HEAD"])
            return self.list_buckets()
        if not ObjectStore.valid_bucket(bucket):
            raise S3Error(400, "InvalidBucketName", "the bucket name is not valid")
        if key is None:
            return self.bucket_op(request, bucket)
        if not key or len(key.encode("utf-8")) > 1024 or "\x00" in key:
            raise S3Error(400, "KeyTooLongError" if key else "InvalidArgument", "invalid object key")
        return self.object_op(request, bucket, key)

    # ------------------------------------------------------------------ buckets

    def list_buckets(self):
        items = "".join("<Bucket><Name>%s</Name><CreationDate>%s</CreationDate></Bucket>"
                        % (escape(n), iso_date(ts)) for n, ts in self.store.list_buckets())
        return xml_response('<ListAllMyBucketsResult xmlns="%s"><Owner><ID>stack-emulator</ID>'
                            '<DisplayName>stack-emulator</DisplayName></Owner><Buckets>%s</Buckets>'
                            '</ListAllMyBucketsResult>' % (XMLNS, items))

    def bucket_op(self, request, bucket):
        method, args = request.method, request.args
        if method == "PUT":
            read_small(request)  # an optional CreateBucketConfiguration
            self.store.create_bucket(bucket)
            return empty_response(200, [("Location", "/" + bucket)])
        if method == "POST" and "delete" in args:
            return self.delete_objects(request, bucket)
        if method not in ("GET", "HEAD", "DELETE"):
            raise method_not_allowed(method, ["GET", "HEAD", "PUT", "DELETE", "POST"])
        if not self.store.bucket_exists(bucket):
            raise no_such_bucket()
        if method == "HEAD":
            return empty_response()
        if method == "DELETE":
            if not self.store.delete_bucket(bucket):
                raise S3Error(409, "BucketNotEmpty", "the bucket you tried to delete is not empty")
            return empty_response(204)
        if "location" in args:
            return xml_response('<LocationConstraint xmlns="%s"/>' % XMLNS)
        if "versioning" in args:
            return xml_response('<VersioningConfiguration xmlns="%s"/>' % XMLNS)
        return xml_response(list_objects_xml(bucket, self.store.keys(bucket), args))

    def delete_objects(self, request, bucket):
        raw = read_small(request, 4 * 1024 * 1024)
        if not self.store.bucket_exists(bucket):
            raise no_such_bucket()
        try:
            root = ET.fromstring(raw)
        except ET.ParseError:
            raise S3Error(400, "MalformedXML", "the XML you provided was not well-formed") from None
        quiet, deleted = False, []
        for el in root.iter():
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "Quiet":
                quiet = (el.text or "").strip().lower() == "true"
            elif tag == "Object":
                for child in el:
                    if child.tag.rsplit("}", 1)[-1] == "Key" and child.text:
                        self.store.delete(bucket, child.text)
                        deleted.append(child.text)
        items = "" if quiet else "".join("<Deleted><Key>%s</Key></Deleted>" % escape(k) for k in deleted)
        return xml_response('<DeleteResult xmlns="%s">%s</DeleteResult>' % (XMLNS, items))

    # ------------------------------------------------------------------ objects

    def object_op(self, request, bucket, key):
        method, args = request.method, request.args
        if ((method == "POST" and ("uploads" in args or "uploadId" in args))
                or (method == "PUT" and "partNumber" in args)):
            raise S3Error(501, "NotImplemented", "multipart uploads are not supported by the emulator")
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            raise method_not_allowed(method, ["GET", "HEAD", "PUT", "DELETE"])
        if not self.store.bucket_exists(bucket):
            raise no_such_bucket()
        if method == "PUT":
            if request.headers.get("x-amz-copy-source"):
                return self.copy_object(request, bucket, key)
            return self.put_object(request, bucket, key)
        if method == "DELETE":
            self.store.delete(bucket, key)
            return empty_response(204)
        meta, f = self.store.open(bucket, key)
        if meta is None:
            raise S3Error(404, "NoSuchKey", "the specified key does not exist")
        try:
            return object_response(meta, f, request.headers.get("Range"))
        except BaseException:
            f.close()
            raise

    def put_object(self, request, bucket, key):
        headers = request.headers
        codings = [c.strip() for c in (headers.get("Content-Encoding") or "").split(",") if c.strip()]
        stream = BodyStream(request.stream)
        if "aws-chunked" in codings or (headers.get("x-amz-content-sha256") or "").startswith("STREAMING-"):
            stream = AwsChunkedReader(stream)
            codings = [c for c in codings if c != "aws-chunked"]
            declared = headers.get("x-amz-decoded-content-length", type=int)
        else:
            declared = request.content_length
        if declared is not None and declared > self.max_object_bytes:
            raise S3Error(413, "EntityTooLarge", "object larger than %d bytes" % self.max_object_bytes)
        meta = self.put(bucket, key, stream, headers.get("Content-Type") or "binary/octet-stream",
                        user_meta(headers), {"content_encoding": ", ".join(codings) or None})
        return empty_response(200, [("ETag", '"%s"' % meta["etag"])])

    def put(self, bucket, key, stream, content_type, meta, extra):
        try:
            return self.store.put(bucket, key, stream, self.max_object_bytes, content_type, meta, extra)
        except TooLarge as exc:
            raise S3Error(413, "EntityTooLarge", str(exc)) from None
        except MalformedBody as exc:
            raise S3Error(400, "IncompleteBody", str(exc)) from None

    def copy_object(self, request, bucket, key):
        headers = request.headers
        read_small(request)
        source = urllib.parse.unquote(headers["x-amz-copy-source"].split("?", 1)[0]).lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        if not ObjectStore.valid_bucket(src_bucket) or not self.store.bucket_exists(src_bucket):
            raise S3Error(404, "NoSuchBucket", "the copy source bucket does not exist")
        meta, f = self.store.open(src_bucket, src_key)
        if meta is None:
            raise S3Error(404, "NoSuchKey", "the copy source key does not exist")
        content_type = headers.get("Content-Type") or "binary/octet-stream"
        new_meta = user_meta(headers)
        if (headers.get("x-amz-metadata-directive") or "COPY").upper() != "REPLACE":
            new_meta, content_type = meta.get("user_meta", {}), meta.get("content_type", content_type)
        with f:
            new = self.put(bucket, key, f, content_type, new_meta,
                           {"content_encoding": meta.get("content_encoding")})
        return xml_response("<CopyObjectResult><LastModified>%s</LastModified><ETag>&quot;%s&quot;"
                            "</ETag></CopyObjectResult>" % (iso_date(new["last_modified"]), new["etag"]))


def method_not_allowed(method, allowed):
    return S3Error(405, "MethodNotAllowed", "%s is not allowed here" % method,
                   [("Allow", ", ".join(allowed))])


def discard_body(request):
    """Read what is left of a small unread body, so that an early answer reaches the client."""
    with contextlib.suppress(OSError, HTTPException):  # the connection closes after this answer
        drain(request, SMALL_BODY)


def read_small(request, limit=SMALL_BODY):
    data = drain(request, limit)
    if data is None:
        raise S3Error(413, "EntityTooLarge", "request body larger than %d bytes" % limit)
    return data


def user_meta(headers):
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")}


def split_target(request):
    """(bucket, key): virtual-hosted style for <bucket>.localhost, else path style."""
    host = (request.headers.get("Host") or "").split(":")[0].lower()
    if host.endswith(".localhost"):
        key = request.path[1:]
        return host[: -len(".localhost")], (key or None)
    bucket, sep, key = request.path[1:].partition("/")   # werkzeug has unquoted the path
    if not bucket:
        return None, None
    return bucket, (key if sep and key else None)


def list_objects_xml(bucket, metas, args):
    """A ListBucketResult (v1, or v2 with list-type=2) for the sorted object metas of a bucket."""
    v2 = args.get("list-type") == "2"
    prefix, delimiter = args.get("prefix", ""), args.get("delimiter", "")
    try:
        max_keys = max(0, min(1000, int(args.get("max-keys", "1000"))))
    except ValueError:
        raise S3Error(400, "InvalidArgument", "max-keys must be an integer") from None
    token = args.get("continuation-token")
    after = args.get("start-after", "") if v2 else args.get("marker", "")
    if v2 and token:
        try:
            after = b64url_decode(token).decode("utf-8")
        except (ValueError, UnicodeError):
            raise S3Error(400, "InvalidArgument", "invalid continuation token") from None
    contents, prefixes, truncated, last = [], [], False, None
    for meta in metas:
        key = meta["key"]
        if not key.startswith(prefix) or (after and key <= after):
            continue
        if after and delimiter and after.endswith(delimiter) and key.startswith(after):
            continue  # inside a common prefix returned on an earlier page
        common = None
        if delimiter:
            idx = key.find(delimiter, len(prefix))
            if idx >= 0:
                common = key[: idx + len(delimiter)]
                if common in prefixes:
                    continue
        if len(contents) + len(prefixes) >= max_keys:
            truncated = True
            break
        if common is not None:
            prefixes.append(common)
            last = common
        else:
            contents.append(meta)
            last = key
    enc = args.get("encoding-type") == "url"
    q = (lambda s: urllib.parse.quote(s, safe="/")) if enc else (lambda s: s)
    parts = ['<ListBucketResult xmlns="%s">' % XMLNS,
             "<Name>%s</Name><Prefix>%s</Prefix>" % (escape(bucket), escape(q(prefix))),
             "<MaxKeys>%d</MaxKeys>" % max_keys,
             "<IsTruncated>%s</IsTruncated>" % ("true" if truncated else "false")]
    if delimiter:
        parts.append("<Delimiter>%s</Delimiter>" % escape(q(delimiter)))
    if enc:
        parts.append("<EncodingType>url</EncodingType>")
    if v2:
        parts.append("<KeyCount>%d</KeyCount>" % (len(contents) + len(prefixes)))
        if token:
            parts.append("<ContinuationToken>%s</ContinuationToken>" % escape(token))
        if truncated and last is not None:
            parts.append("<NextContinuationToken>%s</NextContinuationToken>" % b64url(last.encode("utf-8")))
    else:
        parts.append("<Marker>%s</Marker>" % escape(q(after)))
        if truncated and last is not None:
            parts.append("<NextMarker>%s</NextMarker>" % escape(q(last)))
    for meta in contents:
        parts.append("<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag>"
                     "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>"
                     % (escape(q(meta["key"])), iso_date(meta["last_modified"]), meta["etag"], meta["size"]))
    for common in prefixes:
        parts.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % escape(q(common)))
    parts.append("</ListBucketResult>")
    return "".join(parts)


def object_response(meta, f, range_header):
    """The object's bytes (or the asked Range) streamed from the open file f, which it closes."""
    size = meta["size"]
    start, end, status = 0, size - 1, 200
    headers = [("ETag", '"%s"' % meta["etag"]),
               ("Last-Modified", formatdate(meta["last_modified"], usegmt=True)),
               ("Accept-Ranges", "bytes")]
    if meta.get("content_encoding"):
        headers.append(("Content-Encoding", meta["content_encoding"]))
    headers += list(meta.get("user_meta", {}).items())
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header or "")
    if size > 0 and m and (m.group(1) or m.group(2)):
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        else:
            start = max(0, size - int(m.group(2)))
        if start > end or start >= size:
            raise S3Error(416, "InvalidRange", "the requested range is not satisfiable",
                          [("Content-Range", "bytes */%d" % size)])
        status = 206
        headers.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
    length = max(0, end - start + 1)
    headers.append(("Content-Length", str(length)))

    def body():
        f.seek(start)
        left = length
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk

    response = Response(body(), status=status, headers=headers,
                        content_type=meta.get("content_type") or "binary/octet-stream",
                        direct_passthrough=True)
    response.call_on_close(f.close)
    return response


def create_app(state):
    return S3App(state)

"""Decoding S3's "aws-chunked" content encoding while it streams in.

An SDK that signs (or checksums) a streamed upload sends the object as
  <hex size>[;chunk-signature=<sig>]\r\n<bytes>\r\n ... 0[;chunk-signature=<sig>]\r\n
followed by optional trailers (x-amz-checksum-crc32:...) and an empty line. Signatures and
checksums are not checked: the emulator accepts any credentials.
"""

CHUNK = 64 * 1024
MAX_LINE = 8192


class MalformedBody(Exception):
    """The body does not follow the aws-chunked framing, or ends early."""


class AwsChunkedReader:
    """A file-like read() of the decoded bytes of the aws-chunked stream.read()."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.left = 0       # bytes left in the current chunk
        self.eof = False

    def _more(self, eof_ok=False):
        more = self.stream.read(CHUNK)
        if not more and not eof_ok:
            raise MalformedBody("the aws-chunked body ended early")
        self.buf += more
        return bool(more)

    def _line(self, eof_ends=False):
        """The next line without its CRLF; with eof_ends, b"" at the end of the body."""
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise MalformedBody("malformed aws-chunked body")
            if not self._more(eof_ok=eof_ends and not self.buf):
                return b""
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def read(self, size=CHUNK):
        while not self.eof and self.left == 0:
            size_field = self._line().split(b";", 1)[0].strip()
            if not size_field or size_field.startswith(b"-"):
                raise MalformedBody("malformed aws-chunked size %r" % size_field[:20])
            try:
                self.left = int(size_field, 16)
            except ValueError:
                raise MalformedBody("malformed aws-chunked size %r" % size_field[:20]) from None
            if self.left == 0:
                while self._line(eof_ends=True):  # trailers (x-amz-checksum-...) up to an empty line
                    pass
                self.eof = True
        if self.eof:
            return b""
        if not self.buf:
            self._more()
        n = min(size, self.left)
        data, self.buf = self.buf[:n], self.buf[n:]
        self.left -= len(data)
        if self.left == 0 and self._line():
            raise MalformedBody("aws-chunked chunk not followed by CRLF")
        return data

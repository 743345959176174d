"""PostgreSQL access: a small thread-safe connection pool; every run() is one transaction."""

import threading

import psycopg2
import psycopg2.errors
import psycopg2.extras

from .config import short_error

psycopg2.extras.register_uuid()
UniqueViolation = psycopg2.errors.UniqueViolation
ForeignKeyViolation = psycopg2.errors.ForeignKeyViolation


class Unavailable(Exception):
    """A dependency (PostgreSQL, Redis) is not answering: reported as HTTP 503."""


# How long a request waits for one of the pool's connections before it is answered 503. Under
# load (a test suite's parallel requests on a TCG guest) a request may queue behind dozens of
# others, each holding its connection for its whole transaction: it waits, it does not fail.
POOL_WAIT = 120


class Database:
    def __init__(self, url, size=8):
        self.url = url
        self._idle = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self):
        try:
            return psycopg2.connect(self.url, connect_timeout=5, application_name="stackd",
                                    options="-c statement_timeout=20000",
                                    cursor_factory=psycopg2.extras.RealDictCursor)
        except psycopg2.Error as exc:
            raise Unavailable("PostgreSQL: %s" % short_error(exc)) from None

    def _release(self, conn):
        with self._lock:
            self._idle.append(conn)

    @staticmethod
    def _discard(conn):
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def run(self, fn):
        """Run fn(cursor) in one transaction; rows come back as dicts."""
        if not self._slots.acquire(timeout=POOL_WAIT):
            raise Unavailable("PostgreSQL: every connection of the pool stayed busy for %d s" % POOL_WAIT)
        try:
            for attempt in (0, 1):
                with self._lock:
                    conn = self._idle.pop() if self._idle else None
                pooled = conn is not None
                if conn is None:
                    conn = self._connect()
                try:
                    with conn.cursor() as cur:
                        result = fn(cur)
                    conn.commit()
                except BaseException as exc:
                    broken = bool(conn.closed)
                    if not broken:
                        try:
                            conn.rollback()
                        except Exception:
                            broken = True
                    if broken:
                        self._discard(conn)
                    else:
                        self._release(conn)
                    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                        if broken and pooled and attempt == 0:
                            continue  # a stale pooled connection (PostgreSQL restarted): retry once
                        if broken:
                            raise Unavailable("PostgreSQL: %s" % short_error(exc)) from None
                    raise
                self._release(conn)
                return result
        finally:
            self._slots.release()
        raise Unavailable("PostgreSQL: unreachable")

    def close_all(self):
        with self._lock:
            conns, self._idle = self._idle, []
        for conn in conns:
            self._discard(conn)

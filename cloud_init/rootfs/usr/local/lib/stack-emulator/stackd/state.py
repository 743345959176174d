"""What every service of stackd shares: settings, the database pool, Redis, the stores."""

import os
import threading

from .config import Config
from .db import Database


class State:
    def __init__(self, cfg: Config):
        from .mail import MailStore
        from .objectstore import ObjectStore

        self.cfg = cfg
        self.db = Database(cfg.db_url)
        self.db_ready = threading.Event()
        self.db_init_error = None
        self._redis = None
        self._redis_lock = threading.Lock()
        self.s3 = ObjectStore(os.path.join(cfg.data_dir, "s3"))
        self.mail = MailStore(os.path.join(cfg.data_dir, "mail"))

    def redis(self):
        with self._redis_lock:
            if self._redis is None:
                import redis
                self._redis = redis.Redis.from_url(self.cfg.redis_url, socket_timeout=3,
                                                   socket_connect_timeout=3)
            return self._redis

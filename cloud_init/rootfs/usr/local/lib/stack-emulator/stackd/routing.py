"""A route table a module fills with decorators; api.py mounts them all under /api/v1."""

CLIENT_UP = ("client", "server", "admin")
SERVER_UP = ("server", "admin")
ADMIN = ("admin",)


class Routes:
    def __init__(self):
        self.entries = []  # (method, path, handler, access, uses_db)

    def route(self, method, path, access=CLIENT_UP, db=True):
        """Register handler(ctx, **path_args) for METHOD path (werkzeug rule syntax).

        access: the access types allowed (None: the route authenticates by itself)."""
        def add(fn):
            self.entries.append((method, path, fn, access, db))
            return fn
        return add

    def get(self, path, **kw):
        return self.route("GET", path, **kw)

    def post(self, path, **kw):
        return self.route("POST", path, **kw)

    def patch(self, path, **kw):
        return self.route("PATCH", path, **kw)

    def put(self, path, **kw):
        return self.route("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.route("DELETE", path, **kw)

"""stackd: every guest-side service of the stack emulator VM, in one process.

One thread per listening port, each serving a WSGI application (werkzeug):

  dashboard   ${STACK_EMULATOR_PORT_PREFIX:-81}01   sign-in page            (dashboard.py)
  backend     ${STACK_EMULATOR_PORT_PREFIX:-81}02   Stack Auth REST API     (api.py and its route modules)
  S3          9090                                  path-style object store (s3.py)
  mail web    9001                                  Inbucket-compatible API (inbucket.py)
  SMTP        2500                                  mail catcher, aiosmtpd  (smtp.py)
  mock OAuth  ${STACK_EMULATOR_MOCK_OAUTH_HOST_PORT:-26704}   OIDC provider (oauth_provider.py)

State lives in PostgreSQL (projects, users, sessions, teams, ...) and on disk under
/var/lib/stack-emulator (S3 objects, mail).
"""

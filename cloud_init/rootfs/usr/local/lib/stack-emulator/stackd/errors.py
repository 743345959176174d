"""Errors as the real backend sends them.

A KnownError has a code that @stackframe/stack-shared knows (known-errors.js), the HTTP
status it gives that code, a message and, where stack-shared defines them, details. The body
is {"code", "details"?, "error"} and both x-stack-known-error and x-hexclave-known-error
carry the code, so the SDK rebuilds the same error class. A StatusError is upstream's plain
error without a known code: a text body and no known-error header.
"""

import json


class KnownError(Exception):
    def __init__(self, code, status, message, details=None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.details = details

    def body(self):
        out = {"code": self.code}
        if self.details:
            out["details"] = self.details
        out["error"] = self.message
        return json.dumps(out, indent=2).encode("utf-8")

    def headers(self):
        return [("Content-Type", "application/json; charset=utf-8"),
                ("X-Stack-Known-Error", self.code), ("X-Hexclave-Known-Error", self.code)]


class StatusError(Exception):
    """An error with a status and a text body, but no code the SDK knows."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self):
        return self.message.encode("utf-8")

    def headers(self):
        return [("Content-Type", "text/plain; charset=utf-8")]


# ---- constructors, one per code the emulator sends (names as in stack-shared's KnownErrors)

def schema_error(message):
    return KnownError("SCHEMA_ERROR", 400, message, {"message": message})


def body_parsing_error(message):
    return KnownError("BODY_PARSING_ERROR", 400, message, {"message": message})


def access_type_required():
    return KnownError("ACCESS_TYPE_REQUIRED", 400,
                      "You must specify an access level for this Stack project. Make sure project API "
                      "keys are provided (eg. x-stack-publishable-client-key) and you set the "
                      "x-stack-access-type header to 'client', 'server', or 'admin'.")


def invalid_access_type(access_type):
    return KnownError("INVALID_ACCESS_TYPE", 400,
                      "The x-stack-access-type header must be 'client', 'server', or 'admin', but was "
                      "'%s'." % access_type, {"accessType": access_type})


def project_key_without_access_type():
    return KnownError("PROJECT_KEY_WITHOUT_ACCESS_TYPE", 400,
                      "Either an API key or an admin access token was provided, but the "
                      "x-stack-access-type header is missing. Set it to 'client', 'server', or "
                      "'admin' as appropriate.")


def access_type_without_project_id(access_type):
    return KnownError("ACCESS_TYPE_WITHOUT_PROJECT_ID", 400,
                      "The x-stack-access-type header was '%s', but the x-stack-project-id header was "
                      "not provided." % access_type, {"request_type": access_type})


def insufficient_access_type(actual, allowed):
    return KnownError("INSUFFICIENT_ACCESS_TYPE", 401,
                      "The x-stack-access-type header must be %s, but was '%s'."
                      % (" or ".join("'%s'" % a for a in allowed), actual),
                      {"actual_access_type": actual, "allowed_access_types": list(allowed)})


def current_project_not_found(project_id):
    return KnownError("CURRENT_PROJECT_NOT_FOUND", 400,
                      "The current project with ID %s was not found. Please check the value of the "
                      "x-stack-project-id header." % project_id, {"project_id": project_id})


def publishable_key_required(project_id):
    return KnownError("PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT", 401,
                      "Publishable client keys are required for this project. Create one in Project "
                      "Keys, or disable this requirement there to allow keyless client access.",
                      {"project_id": project_id})


def invalid_key(kind, project_id):
    code, what = {
        "publishable_client_key": ("INVALID_PUBLISHABLE_CLIENT_KEY", "publishable key"),
        "secret_server_key": ("INVALID_SECRET_SERVER_KEY", "secret server key"),
        "super_secret_admin_key": ("INVALID_SUPER_SECRET_ADMIN_KEY", "super secret admin key"),
    }[kind]
    return KnownError(code, 401, "The %s is not valid for the project %s. Does the project and/or "
                      "the key exist?" % (what, project_id), {"project_id": project_id})


def key_required(kind):
    code, what = {
        "secret_server_key": ("SERVER_AUTHENTICATION_REQUIRED", "secret server key"),
        "super_secret_admin_key": ("ADMIN_AUTHENTICATION_REQUIRED", "super secret admin key"),
    }[kind]
    return KnownError(code, 401, "The %s must be provided." % what)


def unparsable_access_token():
    return KnownError("UNPARSABLE_ACCESS_TOKEN", 401, "Access token is not parsable.")


def access_token_expired(expired_at_millis, project_id, user_id, refresh_token_id):
    return KnownError("ACCESS_TOKEN_EXPIRED", 401,
                      "Access token has expired. Please refresh it and try again.",
                      {"expired_at_millis": expired_at_millis, "project_id": project_id,
                       "user_id": user_id, "refresh_token_id": refresh_token_id})


def invalid_project_for_access_token(expected, actual):
    return KnownError("INVALID_PROJECT_FOR_ACCESS_TOKEN", 401,
                      "Access token not valid for this project. Expected project ID %s, but the token "
                      "is for project ID %s." % (expected, actual),
                      {"expected_project_id": expected, "actual_project_id": actual})


def refresh_token_not_found_or_expired():
    return KnownError("REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED", 401,
                      "Refresh token not found for this project, or the session has expired/been revoked.")


def cannot_delete_current_session():
    return KnownError("CANNOT_DELETE_CURRENT_SESSION", 400, "Cannot delete the current session.")


def user_authentication_required():
    return KnownError("USER_AUTHENTICATION_REQUIRED", 401, "User authentication required for this endpoint.")


def cannot_get_own_user_without_user():
    return KnownError("CANNOT_GET_OWN_USER_WITHOUT_USER", 400,
                      "You have specified 'me' as a userId, but did not provide authentication for a user.")


def user_not_found():
    return KnownError("USER_NOT_FOUND", 404, "User not found.")


def user_id_does_not_exist(user_id):
    return KnownError("USER_ID_DOES_NOT_EXIST", 400,
                      "The given user with the ID %s does not exist." % user_id, {"user_id": user_id})


def user_email_already_exists(email, would_work_if_email_was_verified=False):
    tail = (" but the email is not verified. Please login to your existing account with the method you used to "
            "sign up, and then verify your email to sign in with this login method."
            if would_work_if_email_was_verified else ".")
    return KnownError("USER_EMAIL_ALREADY_EXISTS", 409,
                      "A user with email %s already exists%s" % (email, tail),
                      {"email": email, "would_work_if_email_was_verified": would_work_if_email_was_verified})


def sign_up_not_enabled():
    return KnownError("SIGN_UP_NOT_ENABLED", 400,
                      "Creation of new accounts is not enabled for this project. Please ask the project "
                      "owner to enable it.")


def password_authentication_not_enabled():
    return KnownError("PASSWORD_AUTHENTICATION_NOT_ENABLED", 400,
                      "Password authentication is not enabled for this project.")


def email_password_mismatch():
    return KnownError("EMAIL_PASSWORD_MISMATCH", 400, "Wrong e-mail or password.")


def password_too_short(min_length):
    return KnownError("PASSWORD_TOO_SHORT", 400,
                      "Password too short. Minimum length is %d." % min_length, {"min_length": min_length})


def password_too_long(max_length):
    return KnownError("PASSWORD_TOO_LONG", 400,
                      "Password too long. Maximum length is %d." % max_length, {"maxLength": max_length})


def password_confirmation_mismatch():
    return KnownError("PASSWORD_CONFIRMATION_MISMATCH", 400, "Passwords do not match.")


def user_does_not_have_password():
    return KnownError("USER_DOES_NOT_HAVE_PASSWORD", 400,
                      "This user does not have password authentication enabled.")


def verification_code_not_found():
    return KnownError("VERIFICATION_CODE_NOT_FOUND", 404,
                      "The verification code does not exist for this project.")


def verification_code_expired():
    return KnownError("VERIFICATION_CODE_EXPIRED", 400, "The verification code has expired.")


def verification_code_already_used():
    return KnownError("VERIFICATION_CODE_ALREADY_USED", 409, "The verification link has already been used.")


def email_already_verified():
    return KnownError("EMAIL_ALREADY_VERIFIED", 409, "The e-mail is already verified.")


def team_not_found(team_id):
    return KnownError("TEAM_NOT_FOUND", 404, "Team %s not found." % team_id, {"team_id": team_id})


def team_membership_not_found(team_id, user_id):
    return KnownError("TEAM_MEMBERSHIP_NOT_FOUND", 404,
                      "User %s is not found in team %s." % (user_id, team_id),
                      {"team_id": team_id, "user_id": user_id})


def team_membership_already_exists():
    return KnownError("TEAM_MEMBERSHIP_ALREADY_EXISTS", 409, "Team membership already exists.")


def team_permission_required(team_id, user_id, permission_id):
    return KnownError("TEAM_PERMISSION_REQUIRED", 401,
                      "User %s does not have permission %s in team %s." % (user_id, permission_id, team_id),
                      {"team_id": team_id, "user_id": user_id, "permission_id": permission_id})


def permission_not_found(permission_id):
    return KnownError("PERMISSION_NOT_FOUND", 404,
                      'Permission "%s" not found. Make sure you created it on the dashboard.' % permission_id,
                      {"permission_id": permission_id})


def team_permission_not_found(team_id, user_id, permission_id):
    return KnownError("TEAM_PERMISSION_NOT_FOUND", 401,
                      "User %s does not have permission %s in team %s." % (user_id, permission_id, team_id),
                      {"team_id": team_id, "user_id": user_id, "permission_id": permission_id})


def permission_scope_mismatch(permission_id, expected_scope, actual_scope):
    return KnownError("WRONG_PERMISSION_SCOPE", 404,
                      "Permission %s not found. (It was found for a different scope %s, but scope %s was "
                      "expected.)" % (json.dumps(permission_id), json.dumps(actual_scope), json.dumps(expected_scope)),
                      {"permission_id": permission_id, "expected_scope": expected_scope,
                       "actual_scope": actual_scope})


def permission_id_already_exists(permission_id):
    return KnownError("PERMISSION_ID_ALREADY_EXISTS", 400,
                      'Permission with ID "%s" already exists. Choose a different ID.' % permission_id,
                      {"permission_id": permission_id})


def contained_permission_not_found(permission_id):
    return KnownError("CONTAINED_PERMISSION_NOT_FOUND", 400,
                      'Contained permission with ID "%s" not found. Make sure you created it on the dashboard.'
                      % permission_id, {"permission_id": permission_id})


def contact_channel_already_used_for_auth(value=None, channel_type="email", would_work_if_email_was_verified=False):
    quoted = '"(%s)"' % value if value else ""
    tail = (" but the email is not verified. Please login to your existing account with the method you used to "
            "sign up, and then verify your email to sign in with this login method."
            if would_work_if_email_was_verified else ".")
    return KnownError("CONTACT_CHANNEL_ALREADY_USED_FOR_AUTH_BY_SOMEONE_ELSE", 409,
                      "This %s %s is already used for authentication by another account%s" % (channel_type, quoted, tail),
                      {"type": channel_type, "contact_channel_value": value,
                       "would_work_if_email_was_verified": would_work_if_email_was_verified})


def verification_code_max_attempts_reached():
    return KnownError("VERIFICATION_CODE_MAX_ATTEMPTS_REACHED", 400,
                      "The verification code nonce has reached the maximum number of attempts. This code is not "
                      "valid anymore.")


def email_is_not_primary_email(email, primary_email):
    return KnownError("EMAIL_IS_NOT_PRIMARY_EMAIL", 400,
                      "The given e-mail (%s) must equal the user's primary e-mail (%s)." % (email, primary_email),
                      {"email": email, "primary_email": primary_email})


def redirect_url_not_whitelisted():
    return KnownError("REDIRECT_URL_NOT_WHITELISTED", 400,
                      "Redirect URL not whitelisted. Did you forget to add this domain to the trusted domains list "
                      "on the Stack Auth dashboard?")


def client_user_deletion_not_enabled():
    # Not a known error in stack-shared: upstream answers with a plain status error.
    return StatusError(400, "Client user deletion is not enabled for this project")


def route_not_found(url):
    return StatusError(404, "404 — this page does not exist in Stack Auth's API.\n\n"
                            "The stack emulator serves the routes listed in its README.\n\nURL: %s\n" % url)


# ---- API keys (api_keys.py)

def api_key_not_found():
    return KnownError("API_KEY_NOT_FOUND", 404, "API key not found.")


def api_key_revoked():
    return KnownError("API_KEY_REVOKED", 401, "API key has been revoked.")


def api_key_expired():
    return KnownError("API_KEY_EXPIRED", 401, "API key has expired.")


def wrong_api_key_type(expected_type, actual_type):
    return KnownError("WRONG_API_KEY_TYPE", 400,
                      "This endpoint is for %s API keys, but a %s API key was provided."
                      % (expected_type, actual_type),
                      {"expected_type": expected_type, "actual_type": actual_type})


# ---- OAuth sign-in, OAuth accounts, connected accounts (oauth.py, oauth_accounts.py, connected_accounts.py)

def invalid_oauth_client_id_or_secret(client_id=None):
    return KnownError("INVALID_OAUTH_CLIENT_ID_OR_SECRET", 400,
                      "The OAuth client ID or secret is invalid. The client ID must be equal to the project ID "
                      "(potentially with a hash and a branch ID), and the client secret must be a publishable "
                      "client key.", {"client_id": client_id})


def oauth_provider_not_found_or_not_enabled():
    return KnownError("OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED", 400, "The OAuth provider is not found or not enabled.")


def oauth_extra_scope_not_available_with_shared_oauth_keys():
    return KnownError("OAUTH_EXTRA_SCOPE_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS", 400,
                      "Extra scopes are not available with shared OAuth keys. Please add your own OAuth keys on the "
                      "Stack dashboard to use extra scopes.")


def outer_oauth_timeout():
    return KnownError("OUTER_OAUTH_TIMEOUT", 408, "The OAuth flow has timed out. Please sign in again.")


def invalid_authorization_code():
    return KnownError("INVALID_AUTHORIZATION_CODE", 400, "The given authorization code is invalid.")


def oauth_provider_access_denied():
    return KnownError("OAUTH_PROVIDER_ACCESS_DENIED", 400, "The OAuth provider denied access to the user.")


def oauth_provider_temporarily_unavailable():
    return KnownError("OAUTH_PROVIDER_TEMPORARILY_UNAVAILABLE", 503,
                      "The OAuth provider is temporarily unavailable. Please try again later.")


def oauth_connection_already_connected_to_another_user():
    return KnownError("OAUTH_CONNECTION_ALREADY_CONNECTED_TO_ANOTHER_USER", 409,
                      "The OAuth connection is already connected to another user.")


def oauth_connection_not_connected_to_user():
    return KnownError("OAUTH_CONNECTION_NOT_CONNECTED_TO_USER", 400, "The OAuth connection is not connected to any user.")


def oauth_connection_does_not_have_required_scope():
    return KnownError("OAUTH_CONNECTION_DOES_NOT_HAVE_REQUIRED_SCOPE", 400,
                      "The OAuth connection does not have the required scope.")


def oauth_provider_account_id_already_used_for_sign_in():
    return KnownError("OAUTH_PROVIDER_ACCOUNT_ID_ALREADY_USED_FOR_SIGN_IN", 400,
                      "A provider with the same account ID is already used for signing in.")


# ---- projects, admin access tokens, config overrides (owned_projects.py, config_overrides.py, ...)

def unparsable_admin_access_token():
    return KnownError("UNPARSABLE_ADMIN_ACCESS_TOKEN", 401, "Admin access token is not parsable.")


def admin_access_token_expired(expired_at_millis):
    return KnownError("ADMIN_ACCESS_TOKEN_EXPIRED", 401,
                      "Admin access token has expired. Please refresh it and try again.",
                      {"expired_at_millis": expired_at_millis})


def admin_access_token_is_not_admin():
    return KnownError("ADMIN_ACCESS_TOKEN_IS_NOT_ADMIN", 401,
                      "Admin access token does not have the required permissions to access this project.")


def expected_internal_project():
    return KnownError("EXPECTED_INTERNAL_PROJECT", 401, "The project ID is expected to be internal.")


def anonymous_authentication_not_allowed():
    return KnownError("ANONYMOUS_AUTHENTICATION_NOT_ALLOWED", 401,
                      "X-Stack-Access-Token is for an anonymous user, but anonymous users are not enabled. "
                      "Set the X-Stack-Allow-Anonymous-User header of this request to 'true' to allow "
                      "anonymous users.")

// Which stack-shared yup schema a backend response must satisfy, by route and access type.
//
// Crud routes use the crud object's read schema for the request's access type
// (`crud[access].readSchema`; createCrud already falls back server -> client, admin -> server).
// Non-crud routes the SDK parses get the schema of the upstream route's response body.

const SEG = "[^/]+";

export function buildRouteTable({ crud, schemaFields: f }) {
  const c = (file, name) => crud[file][name];
  const users = c("users", "usersCrud");
  const me = c("current-user", "currentUserCrud");
  const teams = c("teams", "teamsCrud");
  const memberships = c("team-memberships", "teamMembershipsCrud");
  const profiles = c("team-member-profiles", "teamMemberProfilesCrud");
  const teamPerms = c("team-permissions", "teamPermissionsCrud");
  const projectPerms = c("project-permissions", "projectPermissionsCrud");
  const channels = c("contact-channels", "contactChannelsCrud");
  const sessions = c("sessions", "sessionsCrud");
  const clientProjects = c("projects", "clientProjectsCrud");
  const adminProjects = c("projects", "projectsCrud");
  const teamPermDefs = c("team-permissions", "teamPermissionDefinitionsCrud");
  const apiKeys = crud["project-api-keys"];
  const ownedProjects = c("projects", "adminUserProjectsCrud");
  const internalKeys = crud["internal-api-keys"];
  const configString = f.yupObject({ config_string: f.yupString().defined() }).defined();

  const tokens = f.yupObject({
    access_token: f.yupString().defined(),
    refresh_token: f.yupString().defined(),
  }).defined();
  const signIn = tokens.concat(f.yupObject({ user_id: f.yupString().defined() }));
  // What oauth4webapi's processRefreshTokenResponse accepts.
  const oauthToken = f.yupObject({
    access_token: f.yupString().defined(),
    token_type: f.yupString().matches(/^bearer$/i).defined(),
    expires_in: f.yupNumber().optional(),
    refresh_token: f.yupString().optional(),
    scope: f.yupString().optional(),
  }).defined();

  // [methods, path regex (below /api/v1, no query), crud or {schema}, "item" | "list"]
  return [
    ["GET PATCH", "/users/me", me, "item"],
    ["GET", "/users", users, "list"],
    ["POST", "/users", users, "item"],
    ["GET PATCH", `/users/${SEG}`, users, "item"],
    ["GET", "/teams", teams, "list"],
    ["POST", "/teams", teams, "item"],
    ["GET PATCH", `/teams/${SEG}`, teams, "item"],
    ["POST", `/team-memberships/${SEG}/${SEG}`, memberships, "item"],
    ["GET", "/team-member-profiles", profiles, "list"],
    ["GET PATCH", `/team-member-profiles/${SEG}/${SEG}`, profiles, "item"],
    ["GET", "/team-permissions", teamPerms, "list"],
    ["POST", `/team-permissions/${SEG}/${SEG}/${SEG}`, teamPerms, "item"],
    ["GET", "/team-permission-definitions", teamPermDefs, "list"],
    ["GET", "/project-permissions", projectPerms, "list"],
    ["POST", `/project-permissions/${SEG}/${SEG}`, projectPerms, "item"],
    ["GET", "/contact-channels", channels, "list"],
    ["POST", "/contact-channels", channels, "item"],
    ["GET PATCH", `/contact-channels/${SEG}/${SEG}`, channels, "item"],
    ["GET", "/auth/sessions", sessions, "list"],
    ["POST", "/auth/sessions", { schema: tokens }, "item"],
    ["GET", "/projects/current", { client: clientProjects.client, server: clientProjects.client, admin: adminProjects.admin }, "item"],
    ["GET PATCH", "/internal/projects/current", adminProjects, "item"],
    ["POST", "/auth/password/sign-in", { schema: signIn }, "item"],
    ["POST", "/auth/password/sign-up", { schema: signIn }, "item"],
    ["POST", "/auth/oauth/token", { schema: oauthToken }, "item"],
    // OAuth sign-in (flows/oauth.mjs): authorize in JSON mode, OAuth accounts, connected accounts.
    ["GET", `/auth/oauth/authorize/${SEG}`, { schema: f.yupObject({ location: f.yupString().defined() }).defined() }, "item"],
    ["GET", "/oauth-providers", crud["oauth-providers"].oauthProviderCrud, "list"],
    ["POST", "/oauth-providers", crud["oauth-providers"].oauthProviderCrud, "item"],
    ["GET PATCH", `/oauth-providers/${SEG}/${SEG}`, crud["oauth-providers"].oauthProviderCrud, "item"],
    ["GET", `/connected-accounts/${SEG}`, crud["connected-accounts"].connectedAccountCrud, "list"],
    ["POST", `/connected-accounts/${SEG}/${SEG}(/${SEG})?/access-token`, crud["connected-accounts"].connectedAccountAccessTokenCrud, "item"],
    ["POST", "/auth/otp/send-sign-in-code", { schema: f.yupObject({ nonce: f.yupString().defined() }).defined() }, "item"],
    ["POST", "/auth/otp/sign-in", { schema: f.signInResponseSchema.defined() }, "item"],
    ["POST", "/auth/otp/sign-in/check-code", { schema: f.yupObject({ is_code_valid: f.yupBoolean().oneOf([true]).defined() }).defined() }, "item"],
    ...["user", "team"].flatMap((type) => [
      ["POST", `/${type}-api-keys/check`, { schema: apiKeys[`${type}ApiKeysCrud`].server.readSchema }, "item"],
      ["POST", `/${type}-api-keys`, { schema: apiKeys[`${type}ApiKeysCreateOutputSchema`] }, "item"],
      ["GET", `/${type}-api-keys`, apiKeys[`${type}ApiKeysCrud`], "list"],
      ["GET PATCH", `/${type}-api-keys/${SEG}`, apiKeys[`${type}ApiKeysCrud`], "item"],
    ]),
    ["GET", "/internal/projects", ownedProjects, "list"],
    ["POST", "/internal/projects", ownedProjects, "item"],
    ["GET", "/internal/api-keys", internalKeys.internalApiKeysCrud, "list"],
    ["POST", "/internal/api-keys", { schema: internalKeys.internalApiKeysCreateOutputSchema }, "item"],
    ["GET PATCH", `/internal/api-keys/${SEG}`, internalKeys.internalApiKeysCrud, "item"],
    ["GET", "/internal/config", { schema: configString }, "item"],
    ["GET", `/internal/config/override/${SEG}`, { schema: configString }, "item"],
  ].map(([methods, pattern, source, kind]) => ({
    methods: methods.split(" "),
    regex: new RegExp(`^${pattern}$`),
    pattern,
    source,
    kind,
  }));
}

export function findSchema(table, method, path, access) {
  for (const route of table) {
    if (!route.methods.includes(method) || !route.regex.test(path)) continue;
    const schema = route.source.schema ?? route.source[access ?? "client"]?.readSchema;
    return schema ? { route, schema } : null;
  }
  return null;
}

function yupMessages(err) {
  const list = err?.errors?.length ? err.errors : [String(err?.message ?? err)];
  return list.slice(0, 6).join("; ");
}

async function check(schema, value) {
  try {
    // userIdOrMeSchema (API keys' user_id) must be told that "me" may stand in; strict
    // validation does not transform, so a response's "me" still fails its uuid test.
    await schema.validate(value, { strict: true, abortEarly: false, context: { stackAllowUserIdMe: true } });
    return null;
  } catch (err) {
    return yupMessages(err);
  }
}

/** Problems (strings) of one successful JSON body against the route's schema. */
export async function validateBody(found, body) {
  const { route, schema } = found;
  if (route.kind === "item") {
    const problem = await check(schema, body);
    return problem ? [problem] : [];
  }
  const problems = [];
  if (body === null || typeof body !== "object" || !Array.isArray(body.items)) {
    return ["list response has no items array"];
  }
  if (typeof body.is_paginated !== "boolean") problems.push("is_paginated is not a boolean");
  const cursor = body.pagination?.next_cursor;
  if (body.pagination != null && cursor !== null && typeof cursor !== "string") {
    problems.push("pagination.next_cursor is neither a string nor null");
  }
  for (const [i, item] of body.items.entries()) {
    const problem = await check(schema, item);
    if (problem) problems.push(`items[${i}]: ${problem}`);
    if (problems.length >= 4) break;
  }
  return problems;
}

/** Problems of an error body: {code, error, details?}, a code stack-shared knows, its status. */
export function validateKnownError({ KnownError }, headerCode, status, body) {
  const problems = [];
  if (body === null || typeof body !== "object") return ["known-error body is not a JSON object"];
  if (typeof body.code !== "string") problems.push("error body has no string code");
  if (typeof body.error !== "string") problems.push("error body has no string error message");
  if (body.details !== undefined && (body.details === null || typeof body.details !== "object")) {
    problems.push("error body details is not an object");
  }
  if (headerCode !== body.code) problems.push(`known-error header ${headerCode} != body code ${body.code}`);
  let parsed;
  try {
    parsed = KnownError.fromJson(body);
  } catch (err) {
    problems.push(`stack-shared cannot rebuild ${body.code}: ${err.message}`);
  }
  if (parsed && parsed.statusCode !== status) {
    problems.push(`${body.code} must have status ${parsed.statusCode}, got ${status}`);
  }
  return problems;
}

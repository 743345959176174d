// Many projects: a user of the internal project creates a project, administers it with its own
// session (an admin access token), makes API keys for it, and an app then runs on those keys;
// config overrides change what the project allows, at once.
import { randomBytes } from "node:crypto";
import { CALLBACK, PASSWORD, check, eq, expectKnownError, expectOk, rejects } from "../lib/ctx.mjs";
import { verifyAccessToken } from "../lib/jwt.mjs";

const unique = (what) => `${what} ${randomBytes(4).toString("hex")}`;
const DAY = 24 * 60 * 60 * 1000;

/** A signed-up user of the internal project (a dashboard user) and the team it owns projects with. */
async function dashboardUser(ctx, what) {
  const app = ctx.clientApp();
  const user = await ctx.signUp(app, ctx.email(what));
  const team = user.selectedTeam ?? (await user.listTeams())[0];
  check(team, "a new internal user has no personal team to own projects with");
  return { app, user, team };
}

/** A project owned by a new dashboard user, and keys for it made through the project's own admin app. */
async function ownedProjectWithKeys(ctx, what) {
  const owner = await dashboardUser(ctx, what);
  const project = await owner.user.createProject({ displayName: unique(what), teamId: owner.team.id });
  const keys = await project.app.createInternalApiKey({
    description: "keys for the app",
    expiresAt: new Date(Date.now() + 30 * DAY),
    hasPublishableClientKey: true,
    hasSecretServerKey: true,
    hasSuperSecretAdminKey: false,
  });
  return { owner, project, keys };
}

function appsFor(ctx, projectId, keys) {
  const { StackClientApp, StackServerApp } = ctx.loaded.sdk;
  const common = {
    baseUrl: ctx.env.apiUrl, projectId, publishableClientKey: keys.publishableClientKey, redirectMethod: "none",
    tokenStore: "memory",
  };
  return {
    client: () => new StackClientApp(common),
    server: () => new StackServerApp({ ...common, secretServerKey: keys.secretServerKey }),
  };
}

async function signUpOn(app, email) {
  return await app.signUpWithCredential({
    email, password: PASSWORD, noRedirect: true, verificationCallbackUrl: `${CALLBACK}/email-verification`,
  });
}

export const flows = [
  {
    name: "projects.create-and-list",
    async run(ctx) {
      const { user, team } = await dashboardUser(ctx, "owner");
      const name = unique("My App");
      const project = await user.createProject({ displayName: name, teamId: team.id });
      check(typeof project.id === "string" && project.id !== ctx.env.projectId, `new project id ${project.id}`);
      eq(project.displayName, name, "displayName of the created project");
      eq(project.ownerTeamId, team.id, "ownerTeamId");
      eq(project.config.allowLocalhost, true, "a new project trusts localhost");
      const owned = await user.listOwnedProjects();
      eq(owned.map((p) => p.id), [project.id], "listOwnedProjects()");
      // The project's own admin app runs on the owner's session (x-*-admin-access-token).
      const admin = await project.app.getProject();
      eq(admin.id, project.id, "getProject() through the owner's session");
      eq(admin.displayName, name, "displayName through the owner's session");
      // Someone else neither lists it nor administers it.
      const other = await dashboardUser(ctx, "stranger");
      eq((await other.user.listOwnedProjects()).length, 0, "a stranger's listOwnedProjects()");
      const { StackAdminApp } = ctx.loaded.sdk;
      const { accessToken } = await other.user.getAuthJson();
      const intruder = new StackAdminApp({
        baseUrl: ctx.env.apiUrl, projectId: project.id, tokenStore: null, projectOwnerSession: async () => accessToken,
      });
      expectKnownError(await rejects(intruder.getProject(), "getProject() with a stranger's session"),
        "ADMIN_ACCESS_TOKEN_IS_NOT_ADMIN", "getProject() with a stranger's session");
    },
  },
  {
    name: "projects.app-on-new-keys",
    async run(ctx) {
      const { project, keys } = await ownedProjectWithKeys(ctx, "keys");
      check(keys.publishableClientKey && keys.secretServerKey, "createInternalApiKey() returned no keys");
      eq(keys.superSecretAdminKey ?? null, null, "a key set made without an admin key");
      const listed = await project.app.listInternalApiKeys();
      eq(listed.map((k) => k.id), [keys.id], "listInternalApiKeys()");
      eq(listed[0].secretServerKey.lastFour, keys.secretServerKey.slice(-4), "lastFour of the secret server key");
      check(listed[0].isValid(), "the new key set is not valid");

      // An app on the new keys: its users are the new project's, not the internal project's.
      const apps = appsFor(ctx, project.id, keys);
      const email = ctx.email("app-user");
      expectOk(await signUpOn(apps.client(), email), "signUpWithCredential on the new project");
      const client = apps.client();
      expectOk(await client.signInWithCredential({ email, password: PASSWORD, noRedirect: true }), "signIn");
      const token = await client.getAccessToken();
      const { payload } = await verifyAccessToken(token, { apiUrl: ctx.env.apiUrl, projectId: project.id });
      eq(payload.project_id, project.id, "project_id claim");
      const users = await apps.server().listUsers();
      eq(users.map((u) => u.primaryEmail), [email], "listUsers() on the new project");
      const internalMatch = await ctx.serverApp().listUsers({ query: email });
      eq(internalMatch.length, 0, "the app's user in the internal project");

      // A revoked key set lets nobody in.
      await listed[0].revoke();
      expectKnownError(await rejects(apps.server().listUsers(), "listUsers() with a revoked key"),
        "INVALID_SECRET_SERVER_KEY", "listUsers() with a revoked key");
    },
  },
  {
    name: "projects.config-override",
    async run(ctx) {
      const { project, keys } = await ownedProjectWithKeys(ctx, "config");
      const apps = appsFor(ctx, project.id, keys);

      await project.updateConfig({ "auth.allowSignUp": false });
      eq((await project.getConfig()).auth.allowSignUp, false, "getConfig().auth.allowSignUp");
      eq((await project.app.getProject()).config.signUpEnabled, false, "config.signUpEnabled after the override");
      // The SDK throws this error rather than returning it in the Result.
      const refused = await signUpOn(apps.client(), ctx.email("refused")).catch((err) => err);
      expectKnownError(refused, "SIGN_UP_NOT_ENABLED", "sign-up with auth.allowSignUp false");
      const override = await project.getConfigOverride("environment");
      eq(override.auth?.allowSignUp ?? override["auth.allowSignUp"], false, "the environment override");

      await project.updateConfig({ "auth.allowSignUp": true, "teams.createPersonalTeamOnSignUp": true });
      const email = ctx.email("welcome");
      expectOk(await signUpOn(apps.client(), email), "sign-up once allowed again");
      const [user] = await apps.server().listUsers({ query: email });
      check(user, "the new user is not listed");
      eq((await user.listTeams()).length, 1, "teams of a user signed up with createPersonalTeamOnSignUp");

      // Resetting the key goes back to what the project had before the override.
      await project.resetConfigOverrideKeys("environment", ["teams.createPersonalTeamOnSignUp"]);
      eq((await project.getConfig()).teams.createPersonalTeamOnSignUp, false, "after resetConfigOverrideKeys()");
      // A key Stack Auth does not know is refused with a message naming it.
      const err = await rejects(project.updateConfig({ "auth.allowSignUpp": true }), "updateConfig(unknown key)");
      check(/auth\.allowSignUpp/.test(err.message), `unknown key error does not name the key: ${err.message}`);
    },
  },
  {
    name: "projects.update-and-delete",
    async run(ctx) {
      const { owner, project } = await ownedProjectWithKeys(ctx, "lifecycle");
      await project.update({ displayName: "Renamed", config: { credentialEnabled: false } });
      const again = await project.app.getProject();
      eq(again.displayName, "Renamed", "displayName after update()");
      eq(again.config.credentialEnabled, false, "config.credentialEnabled after update()");
      eq((await project.getConfig()).auth.password.allowSignIn, false, "auth.password.allowSignIn after update()");
      await project.delete();
      // A fresh admin app on the owner's session: the project is gone.
      const { StackAdminApp } = ctx.loaded.sdk;
      const { accessToken } = await owner.user.getAuthJson();
      const gone = new StackAdminApp({
        baseUrl: ctx.env.apiUrl, projectId: project.id, tokenStore: null, projectOwnerSession: async () => accessToken,
      });
      expectKnownError(await rejects(gone.getProject(), "getProject() after delete()"), "CURRENT_PROJECT_NOT_FOUND",
        "getProject() after delete()");
    },
  },
];

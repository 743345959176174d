// User management with StackServerApp (secret server key), as an app's backend does it.
import { randomBytes } from "node:crypto";
import { PASSWORD, check, eq, expectKnownError, expectOk } from "../lib/ctx.mjs";

const META = {
  client: { plan: "pro", flags: [1, 2] },
  clientReadOnly: { tier: 3, verified_by: "support" },
  server: { stripe: "cus_123", notes: { a: null } },
};

export const flows = [
  {
    name: "server.create-and-get-user",
    async run(ctx) {
      const server = ctx.serverApp();
      const email = ctx.email("srvcreate");
      const user = await server.createUser({
        primaryEmail: email,
        primaryEmailVerified: true,
        primaryEmailAuthEnabled: true,
        password: PASSWORD,
        displayName: "Server Made",
        clientMetadata: META.client,
        clientReadOnlyMetadata: META.clientReadOnly,
        serverMetadata: META.server,
      });
      for (const u of [user, await ctx.serverApp().getUser(user.id)]) {
        check(u, "getUser(id) returned null for a created user");
        eq(u.id, user.id, "id");
        eq(u.primaryEmail, email, "primaryEmail");
        eq(u.primaryEmailVerified, true, "primaryEmailVerified");
        eq(u.displayName, "Server Made", "displayName");
        eq(u.hasPassword, true, "hasPassword");
        eq(u.clientMetadata, META.client, "clientMetadata");
        eq(u.clientReadOnlyMetadata, META.clientReadOnly, "clientReadOnlyMetadata");
        eq(u.serverMetadata, META.server, "serverMetadata");
        check(u.lastActiveAt instanceof Date && !Number.isNaN(u.lastActiveAt.getTime()), "lastActiveAt is not a date");
      }
      // The password set by the server works for the user.
      const client = ctx.clientApp();
      expectOk(await client.signInWithCredential({ email, password: PASSWORD, noRedirect: true }), "sign-in");
      const me = await client.getUser({ or: "throw" });
      eq(me.id, user.id, "client user id");
      eq(me.clientReadOnlyMetadata, META.clientReadOnly, "clientReadOnlyMetadata seen by the client");
      check(!("serverMetadata" in me), "the client user object exposes serverMetadata");
    },
  },
  {
    name: "server.create-user-duplicate-email",
    async run(ctx) {
      const email = ctx.email("srvdup");
      const server = ctx.serverApp();
      await server.createUser({ primaryEmail: email, primaryEmailAuthEnabled: true, password: PASSWORD });
      let error;
      await server.createUser({ primaryEmail: email, primaryEmailAuthEnabled: true, password: PASSWORD })
        .catch((e) => { error = e; });
      expectKnownError(error, "USER_EMAIL_ALREADY_EXISTS", "createUser with a taken email");
    },
  },
  {
    name: "server.list-users-pagination",
    async run(ctx) {
      const server = ctx.serverApp();
      const tag = `pg${randomBytes(4).toString("hex")}`;
      const ids = [];
      for (let i = 0; i < 3; i++) {
        const u = await server.createUser({ primaryEmail: ctx.email(`${tag}-${i}`), displayName: `${tag} ${i}` });
        ids.push(u.id);
      }
      const page1 = await server.listUsers({ query: tag, limit: 2, orderBy: "signedUpAt" });
      eq(page1.map((u) => u.id), ids.slice(0, 2), "first page (limit 2, oldest first)");
      check(typeof page1.nextCursor === "string" && page1.nextCursor, `first page nextCursor is ${page1.nextCursor}`);
      const page2 = await server.listUsers({ query: tag, limit: 2, orderBy: "signedUpAt", cursor: page1.nextCursor });
      eq(page2.map((u) => u.id), ids.slice(2), "second page");
      eq(page2.nextCursor, null, "nextCursor of the last page");
      const desc = await server.listUsers({ query: tag, orderBy: "signedUpAt", desc: true });
      eq(desc.map((u) => u.id), [...ids].reverse(), "all users, newest first");
      const all = await server.listUsers({ limit: 200 });
      check(all.length >= 3, `listUsers() without a query returned ${all.length} users`);
    },
  },
  {
    name: "server.update-user",
    async run(ctx) {
      const server = ctx.serverApp();
      const user = await server.createUser({ primaryEmail: ctx.email("srvupd"), primaryEmailAuthEnabled: true, password: PASSWORD });
      const newEmail = ctx.email("srvupd-new");
      await user.update({
        displayName: "Renamed",
        primaryEmail: newEmail,
        primaryEmailVerified: true,
        password: "server-set-password-2",
        serverMetadata: META.server,
        clientReadOnlyMetadata: META.clientReadOnly,
      });
      const again = await ctx.serverApp().getUser(user.id);
      eq(again?.displayName, "Renamed", "displayName");
      eq(again?.primaryEmail, newEmail, "primaryEmail");
      eq(again?.primaryEmailVerified, true, "primaryEmailVerified");
      eq(again?.serverMetadata, META.server, "serverMetadata");
      eq(again?.clientReadOnlyMetadata, META.clientReadOnly, "clientReadOnlyMetadata");
      await again.setServerMetadata({ replaced: true });
      eq((await ctx.serverApp().getUser(user.id))?.serverMetadata, { replaced: true }, "serverMetadata after setServerMetadata");
      const client = ctx.clientApp();
      expectOk(await client.signInWithCredential({ email: newEmail, password: "server-set-password-2", noRedirect: true }),
        "sign-in with the new email and password");
    },
  },
  {
    name: "server.delete-user",
    async run(ctx) {
      const server = ctx.serverApp();
      const email = ctx.email("srvdel");
      const user = await server.createUser({ primaryEmail: email, primaryEmailAuthEnabled: true, password: PASSWORD });
      await user.delete();
      eq(await ctx.serverApp().getUser(user.id), null, "getUser(id) after delete()");
      const listed = await ctx.serverApp().listUsers({ query: email.split("@")[0] });
      eq(listed.map((u) => u.id), [], "listUsers after delete()");
      expectKnownError(await ctx.clientApp().signInWithCredential({ email, password: PASSWORD, noRedirect: true }),
        "EMAIL_PASSWORD_MISMATCH", "sign-in as a deleted user");
    },
  },
  {
    name: "server.get-missing-user",
    async run(ctx) {
      eq(await ctx.serverApp().getUser("3c8a7e5e-3a1f-4c55-9d1e-2f6b1a0e9c11"), null, "getUser(unknown id)");
    },
  },
  {
    name: "server.create-session",
    async run(ctx) {
      const server = ctx.serverApp();
      const user = await server.createUser({ primaryEmail: ctx.email("srvsess") });
      const session = await user.createSession({ expiresInMillis: 60 * 60 * 1000 });
      const tokens = await session.getTokens();
      check(tokens.accessToken && tokens.refreshToken, "createSession() tokens are missing");
      eq((await ctx.verify(tokens.accessToken)).payload.sub, user.id, "sub of the session's access token");
      // A browser app handed these tokens is signed in as the user.
      const client = ctx.clientApp({ tokenStore: tokens });
      eq((await client.getUser({ or: "throw" })).id, user.id, "client user from server-made tokens");
      const refreshOnly = ctx.clientApp({ tokenStore: { accessToken: null, refreshToken: tokens.refreshToken } });
      eq((await refreshOnly.getUser({ or: "throw" })).id, user.id, "client user from the refresh token alone");
    },
  },
  {
    name: "server.user-from-request-tokens",
    async run(ctx) {
      const client = ctx.clientApp();
      const user = await ctx.signUp(client, ctx.email("reqtok"));
      await ctx.serverApp().getUser(user.id).then((u) => u.update({ serverMetadata: { role: "admin" } }));
      // A backend reading the tokens a browser sent (x-stack-auth / Authorization header).
      const tokenStore = await client.getAuthJson();
      const server = ctx.serverApp();
      const current = await server.getUser({ tokenStore, or: "throw" });
      eq(current.id, user.id, "server getUser({tokenStore}) id");
      eq(current.serverMetadata, { role: "admin" }, "serverMetadata of the current user");
      const partial = await server.getPartialUser({ from: "token", tokenStore });
      eq(partial?.id, user.id, "getPartialUser({from: 'token'}) id");
    },
  },
];

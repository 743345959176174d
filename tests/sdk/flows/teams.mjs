// Teams, memberships, member profiles and team permissions, from the server and the client.
import { randomBytes } from "node:crypto";
import { check, eq } from "../lib/ctx.mjs";

const unique = (what) => `${what} ${randomBytes(4).toString("hex")}`;
const ids = (list) => list.map((x) => x.id).sort();

async function clientUserWithTeamRights(ctx, what) {
  const app = ctx.clientApp();
  const user = await ctx.signUp(app, ctx.email(what));
  return { app, user };
}

export const flows = [
  {
    name: "server.teams-crud",
    async run(ctx) {
      const server = ctx.serverApp();
      const name = unique("Server Team");
      const team = await server.createTeam({ displayName: name });
      eq(team.displayName, name, "displayName of the created team");
      check(team.createdAt instanceof Date && !Number.isNaN(team.createdAt.getTime()), "createdAt is not a date");
      check((await ctx.serverApp().listTeams()).some((t) => t.id === team.id), "listTeams() lacks the new team");
      await team.update({
        displayName: `${name} v2`,
        clientMetadata: { color: "blue" },
        clientReadOnlyMetadata: { seats: 5 },
        serverMetadata: { billing: "acct_1" },
      });
      const again = await ctx.serverApp().getTeam(team.id);
      check(again, "getTeam(id) returned null");
      eq(again.displayName, `${name} v2`, "displayName after update");
      eq(again.clientMetadata, { color: "blue" }, "clientMetadata after update");
      eq(again.clientReadOnlyMetadata, { seats: 5 }, "clientReadOnlyMetadata after update");
      eq(again.serverMetadata, { billing: "acct_1" }, "serverMetadata after update");
      const page = await ctx.serverApp().listTeams({ query: name, limit: 10 });
      eq(page.map((t) => t.id), [team.id], "listTeams({query})");
      await again.delete();
      eq(await ctx.serverApp().getTeam(team.id), null, "getTeam(id) after delete()");
    },
  },
  {
    name: "server.team-membership",
    async run(ctx) {
      const server = ctx.serverApp();
      const team = await server.createTeam({ displayName: unique("Members") });
      const alice = await server.createUser({ primaryEmail: ctx.email("alice"), displayName: "Alice" });
      const bob = await server.createUser({ primaryEmail: ctx.email("bob"), displayName: "Bob" });
      await team.addUser(alice.id);
      await team.addUser(bob.id);
      const members = await ctx.serverApp().getTeam(team.id).then((t) => t.listUsers());
      eq(ids(members), [alice.id, bob.id].sort(), "team.listUsers() ids");
      const aliceMember = members.find((m) => m.id === alice.id);
      eq(aliceMember.primaryEmail, alice.primaryEmail, "member user primaryEmail");
      check(aliceMember.teamProfile && "displayName" in aliceMember.teamProfile, "member has no teamProfile");
      const aliceTeams = await (await ctx.serverApp().getUser(alice.id)).listTeams();
      check(aliceTeams.some((t) => t.id === team.id), "user.listTeams() lacks the team");
      const byTeam = await ctx.serverApp().listUsers({ teamId: team.id });
      eq(ids(byTeam), [alice.id, bob.id].sort(), "listUsers({teamId})");
      await team.removeUser(bob.id);
      const after = await ctx.serverApp().getTeam(team.id).then((t) => t.listUsers());
      eq(ids(after), [alice.id], "team.listUsers() after removeUser()");
    },
  },
  {
    name: "client.team-create-and-select",
    async run(ctx) {
      const { app, user } = await clientUserWithTeamRights(ctx, "teamsel");
      const { config } = await app.getProject();
      if (!config.clientTeamCreationEnabled) {
        let failed = false;
        await user.createTeam({ displayName: "Nope" }).catch(() => { failed = true; });
        check(failed, "createTeam() succeeded although client team creation is disabled");
        return;
      }
      const name = unique("Client Team");
      const team = await user.createTeam({ displayName: name });
      eq(team.displayName, name, "displayName");
      check((await user.listTeams()).some((t) => t.id === team.id), "user.listTeams() lacks the created team");
      const me = await app.getUser({ or: "throw" });
      eq(me.selectedTeam?.id, team.id, "selectedTeam after createTeam() (the SDK selects it)");
      eq((await ctx.verify(await me.getAccessToken())).payload.selected_team_id, team.id, "selected_team_id claim");
      await me.setSelectedTeam(null);
      const cleared = await app.getUser({ or: "throw" });
      eq(cleared.selectedTeam, null, "selectedTeam after setSelectedTeam(null)");
      await cleared.setSelectedTeam(team);
      eq((await app.getUser({ or: "throw" })).selectedTeam?.id, team.id, "selectedTeam after setSelectedTeam(team)");
      const server = await ctx.serverApp().getUser(user.id);
      eq(server.selectedTeam?.id, team.id, "selectedTeam seen by the server");
    },
  },
  {
    name: "client.team-update-and-delete",
    async run(ctx) {
      const server = ctx.serverApp();
      const { app, user } = await clientUserWithTeamRights(ctx, "teamupd");
      const team = await server.createTeam({ displayName: unique("Owned"), creatorUserId: user.id });
      const mine = (await user.listTeams()).find((t) => t.id === team.id);
      check(mine, "user.listTeams() lacks a team created for them as creator");
      await mine.update({ displayName: "Renamed by admin", clientMetadata: { a: 1 } });
      const again = (await (await app.getUser({ or: "throw" })).listTeams()).find((t) => t.id === team.id);
      eq(again?.displayName, "Renamed by admin", "displayName after team.update()");
      eq(again?.clientMetadata, { a: 1 }, "clientMetadata after team.update()");
      await again.delete();
      eq(await ctx.serverApp().getTeam(team.id), null, "server getTeam(id) after the client deleted it");
    },
  },
  {
    name: "team.permissions",
    async run(ctx) {
      const server = ctx.serverApp();
      const creator = await clientUserWithTeamRights(ctx, "tpadmin");
      const member = await clientUserWithTeamRights(ctx, "tpmember");
      const team = await server.createTeam({ displayName: unique("Perms"), creatorUserId: creator.user.id });
      await team.addUser(member.user.id);
      const asCreator = (await creator.user.listTeams()).find((t) => t.id === team.id);
      const asMember = (await member.user.listTeams()).find((t) => t.id === team.id);
      check(asCreator && asMember, "the team is missing from the creator's or member's listTeams()");
      eq(await creator.user.hasPermission(asCreator, "team_admin"), true, "creator has team_admin");
      eq(await member.user.hasPermission(asMember, "team_member"), true, "member has team_member");
      eq(await member.user.hasPermission(asMember, "team_admin"), false, "member has team_admin");
      const creatorPerms = (await creator.user.listPermissions(asCreator)).map((p) => p.id);
      check(creatorPerms.includes("team_admin"), `creator permissions ${creatorPerms} lack team_admin`);
      const direct = (await creator.user.listPermissions(asCreator, { recursive: false })).map((p) => p.id);
      check(direct.includes("team_admin"), `creator direct permissions ${direct} lack team_admin`);
      const serverMember = await server.getUser(member.user.id);
      await serverMember.grantPermission(team, "team_admin");
      eq(await (await ctx.serverApp().getUser(member.user.id)).hasPermission(team, "team_admin"), true,
        "server hasPermission after grantPermission(team_admin)");
      await serverMember.revokePermission(team, "team_admin");
      eq(await (await ctx.serverApp().getUser(member.user.id)).hasPermission(team, "team_admin"), false,
        "server hasPermission after revokePermission(team_admin)");
    },
  },
  {
    name: "client.team-member-profile",
    async run(ctx) {
      const { app, user } = await clientUserWithTeamRights(ctx, "tprofile");
      const team = await ctx.serverApp().createTeam({ displayName: unique("Profiles"), creatorUserId: user.id });
      const mine = (await user.listTeams()).find((t) => t.id === team.id);
      const profile = await user.getTeamProfile(mine);
      check(profile && "displayName" in profile, "getTeamProfile() returned no profile");
      await profile.update({ displayName: "Captain" });
      const me = await app.getUser({ or: "throw" });
      eq((await me.getTeamProfile(mine)).displayName, "Captain", "team profile displayName after update");
      const users = await mine.listUsers();
      eq(users.find((u) => u.id === user.id)?.teamProfile.displayName, "Captain", "teamProfile in team.listUsers()");
    },
  },
];

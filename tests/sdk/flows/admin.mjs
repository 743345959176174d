// StackAdminApp with the super secret admin key: what a setup script or test harness reads.
import { check, eq } from "../lib/ctx.mjs";

export const flows = [
  {
    name: "admin.project",
    async run(ctx) {
      const project = await ctx.adminApp().getProject();
      eq(project.id, ctx.env.projectId, "admin project id");
      check(typeof project.displayName === "string" && project.displayName, "displayName is empty");
      check(project.createdAt instanceof Date && !Number.isNaN(project.createdAt.getTime()), "createdAt is not a date");
      eq(typeof project.isProductionMode, "boolean", "typeof isProductionMode");
      eq(project.config.credentialEnabled, true, "config.credentialEnabled");
    },
  },
  {
    name: "admin.team-permission-definitions",
    async run(ctx) {
      const definitions = await ctx.adminApp().listTeamPermissionDefinitions();
      const byId = Object.fromEntries(definitions.map((d) => [d.id, d]));
      check(byId.team_admin && byId.team_member, `definitions ${Object.keys(byId)} lack team_admin or team_member`);
      check(Array.isArray(byId.team_admin.containedPermissionIds), "team_admin containedPermissionIds is not an array");
    },
  },
];

// Loads one pinned SDK release (an npm alias in package.json) together with the
// @stackframe/stack-shared build that this release itself depends on, so schemas and
// known errors come from the same version the SDK parses responses with.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const ALIASES = ["sdk-latest", "sdk-legacy"];

function readJson(file) {
  return JSON.parse(readFileSync(file, "utf8"));
}

export async function loadSdk(alias) {
  if (!ALIASES.includes(alias)) {
    throw new Error(`unknown SDK alias ${alias}; expected one of ${ALIASES.join(", ")}`);
  }
  const sdkDir = path.join(here, "..", "node_modules", alias);
  const sdk = await import(alias);
  // Resolve stack-shared the way the SDK does: from the SDK's own directory.
  const require = createRequire(path.join(sdkDir, "package.json"));
  const cjsEntry = require.resolve("@stackframe/stack-shared/dist/known-errors");
  const sharedDir = cjsEntry.slice(0, cjsEntry.lastIndexOf(`${path.sep}dist${path.sep}`));
  // The SDK's ESM build imports stack-shared's ESM build: use the very same module files.
  const esm = (name) => import(pathToFileURL(path.join(sharedDir, "dist", "esm", `${name}.js`)).href);
  const crudNames = [
    "users", "current-user", "teams", "team-memberships", "team-member-profiles",
    "team-permissions", "project-permissions", "contact-channels", "sessions", "projects",
    "project-api-keys", "internal-api-keys",
    "oauth-providers", "connected-accounts",
  ];
  const crud = {};
  for (const name of crudNames) crud[name] = await esm(`interface/crud/${name}`);
  return {
    alias,
    version: readJson(path.join(sdkDir, "package.json")).version,
    sharedVersion: readJson(path.join(sharedDir, "package.json")).version,
    sdk,
    knownErrors: await esm("known-errors"),
    schemaFields: await esm("schema-fields"),
    crud,
  };
}

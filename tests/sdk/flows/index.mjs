// Every flow, in run order. A flow is {name, run(ctx)}; it throws on any mismatch.
import { flows as clientAuth } from "./client-auth.mjs";
import { flows as tokens } from "./tokens.mjs";
import { flows as serverUsers } from "./server-users.mjs";
import { flows as teams } from "./teams.mjs";
import { flows as email } from "./email.mjs";
import { flows as errors } from "./errors.mjs";
import { flows as admin } from "./admin.mjs";
import { flows as projects } from "./projects.mjs";
import { flows as otpAndApiKeys } from "./otp-and-api-keys.mjs";
import { flows as oauth } from "./oauth.mjs";
import { flows as mailCodes } from "./mail-codes.mjs";

export const FLOWS = [...clientAuth, ...tokens, ...serverUsers, ...teams, ...email, ...errors, ...admin, ...otpAndApiKeys, ...projects, ...oauth, ...mailCodes];

const names = FLOWS.map((f) => f.name);
const duplicate = names.find((n, i) => names.indexOf(n) !== i);
if (duplicate) throw new Error(`duplicate flow name ${duplicate}`);

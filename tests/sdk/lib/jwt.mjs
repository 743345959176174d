// Verifies access tokens the way an app's own backend does: ES256 against the project's JWKS.
// Anonymous users' tokens have their own audience (<project>:anon) and keys, published only
// with ?include_anonymous=true, so a plain JWKS check rejects them.
import * as jose from "jose";

const jwksByUrl = new Map();

export function jwksUrl(apiUrl, projectId, { anonymous = false } = {}) {
  const query = anonymous ? "?include_anonymous=true" : "";
  return `${apiUrl.replace(/\/+$/, "")}/api/v1/projects/${projectId}/.well-known/jwks.json${query}`;
}

/** Returns {header, payload} of a verified token; throws with the reason otherwise. */
export async function verifyAccessToken(token, { apiUrl, projectId }, { anonymous = false } = {}) {
  const url = jwksUrl(apiUrl, projectId, { anonymous });
  if (!jwksByUrl.has(url)) jwksByUrl.set(url, jose.createRemoteJWKSet(new URL(url)));
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwksByUrl.get(url), {
    algorithms: ["ES256"],
    audience: anonymous ? `${projectId}:anon` : projectId,
    clockTolerance: 5,
  });
  return { header: protectedHeader, payload };
}

// Example upstream behind Gatehouse: every request must carry
// X-Gatehouse-Jwt-Assertion, verified with jose against the issuer's JWKS
// (signature, iss, aud, exp, nbf) before the app answers with who is asking.
//
//   ISSUER=http://auth.localhost:8080 AUDIENCE=app.localhost LISTEN=127.0.0.1:9000 npm start
import http from 'node:http';
import { pathToFileURL } from 'node:url';
import { createRemoteJWKSet, jwtVerify } from 'jose';

export const ASSERTION_HEADER = 'x-gatehouse-jwt-assertion';
export const ALGORITHMS = ['ES256', 'RS256', 'EdDSA'];
// The assertion's "typ": the issuer's ID tokens ("JWT") and access tokens
// ("at+jwt") are signed with the same keys, and neither is an assertion.
export const ASSERTION_TYPE = 'gatehouse-assertion+jwt';

// createVerifier returns async (token) => claims, throwing when the token
// is not valid. The JWKS is cached and fetched again when a token names a
// key ID it has not seen (at most once per 30s, jose's cooldown), so
// Gatehouse's key rotation needs nothing from the app.
export function createVerifier({ issuer, audience }) {
  const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
  return async (token) => {
    const { payload } = await jwtVerify(token, jwks, {
      issuer,
      audience,
      algorithms: ALGORITHMS,
      typ: ASSERTION_TYPE,
      requiredClaims: ['sub', 'exp'],
    });
    return payload;
  };
}

// createApp is the HTTP server: JSON identity for a valid assertion, 401
// otherwise. /healthz is open (a public path in the example route, so no
// assertion comes with it).
export function createApp({ issuer, audience, log = console.error }) {
  const verify = createVerifier({ issuer, audience });
  return http.createServer(async (req, res) => {
    if (req.url === '/healthz') {
      res.end('ok\n');
      return;
    }
    const token = req.headers[ASSERTION_HEADER];
    let claims;
    try {
      if (typeof token !== 'string' || token === '') {
        throw new Error('no X-Gatehouse-Jwt-Assertion header');
      }
      claims = await verify(token);
    } catch (err) {
      // The reason goes to the log, not to the client.
      const cause = err.cause ? ` (${err.cause.code ?? err.cause.message})` : '';
      log(`401 ${req.method} ${req.url}: ${err.code ? `${err.code} ` : ''}${err.message}${cause}`);
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('invalid or missing identity assertion\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({
      sub: claims.sub,
      email: claims.email,
      name: claims.name,
      org_id: claims.org_id,
      org: claims.org_slug,
      roles: claims.roles ?? [],
      groups: claims.groups ?? [],
    }) + '\n');
  });
}

// config reads ISSUER, AUDIENCE and LISTEN; the defaults match
// `gatehouse serve --dev`.
export function config(env = process.env) {
  const listen = env.LISTEN || '127.0.0.1:9000';
  const i = listen.lastIndexOf(':');
  return {
    issuer: (env.ISSUER || 'http://auth.localhost:8080').replace(/\/$/, ''),
    audience: env.AUDIENCE || 'app.localhost',
    host: i > 0 ? listen.slice(0, i).replace(/^\[|\]$/g, '') : undefined,
    port: Number(listen.slice(i + 1)),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { issuer, audience, host, port } = config();
  createApp({ issuer, audience }).listen(port, host, () => {
    console.error(`verify-node: listening on ${host ?? '*'}:${port}; issuer ${issuer}, audience ${audience}`);
  });
}

// Example server-side web app signing people in with Gatehouse's OpenID
// Provider through openid-client: authorization code with PKCE, the ID
// token checked (signature, iss, aud, nonce), userinfo read with the
// access token, the org shown. Against `gatehouse serve --dev`, with the
// demo-web secret its banner prints:
//
//   npm ci && CLIENT_SECRET=... LISTEN=127.0.0.1:5555 npm start
//   # browser: http://127.0.0.1:5555/
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import * as client from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';

export function config(env) {
  const listen = env.LISTEN || '127.0.0.1:5555';
  return {
    issuer: (env.ISSUER || 'http://auth.localhost:8080').replace(/\/$/, ''),
    clientId: env.CLIENT_ID || 'demo-web',
    clientSecret: env.CLIENT_SECRET,
    redirectUri: env.REDIRECT_URL || `http://${listen}/callback`,
    listen,
    // GATEHOUSE_ADDR: dial *.localhost names here (Node asks the system
    // resolver, which may not map them to loopback).
    gatehouseAddr: env.GATEHOUSE_ADDR,
  };
}

function fetcher(gatehouseAddr) {
  if (!gatehouseAddr) return undefined;
  const host = gatehouseAddr.replace(/:\d+$/, '');
  const agent = new Agent({
    connect: {
      lookup: (hostname, opts, cb) => {
        if (hostname.endsWith('localhost')) {
          return opts.all ? cb(null, [{ address: host, family: 4 }]) : cb(null, host, 4);
        }
        return import('node:dns').then((dns) => dns.lookup(hostname, opts, cb));
      },
    },
  });
  // A URL's port is kept; only the name is resolved here.
  return (url, options) => undiciFetch(url, { ...options, dispatcher: agent });
}

export async function createApp(cfg, log = console.error) {
  if (!cfg.clientSecret) throw new Error('CLIENT_SECRET is required (dev mode prints demo-web\'s)');
  const options = { execute: [] };
  if (cfg.issuer.startsWith('http://')) options.execute.push(client.allowInsecureRequests); // dev only
  const f = fetcher(cfg.gatehouseAddr);
  if (f) options[client.customFetch] = f;
  const oidc = await client.discovery(new URL(cfg.issuer), cfg.clientId, cfg.clientSecret, undefined, options);
  const pending = new Map(); // state -> { verifier, nonce, at }
  const sessions = new Map(); // cookie -> { claims, userinfo, idToken }

  const cookieOf = (req) => (req.headers.cookie || '').split(';').map((c) => c.trim().split('='))
    .find(([k]) => k === 'node_web_session')?.[1];

  return http.createServer(async (req, res) => {
    const url = new URL(req.url, `http://${cfg.listen}`);
    try {
      if (url.pathname === '/login') {
        const verifier = client.randomPKCECodeVerifier();
        const state = client.randomState();
        const nonce = client.randomNonce();
        pending.set(state, { verifier, nonce, at: Date.now() });
        const to = client.buildAuthorizationUrl(oidc, {
          redirect_uri: cfg.redirectUri, scope: 'openid profile email', state, nonce,
          code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
        });
        res.writeHead(302, { location: to.href }).end();
        return;
      }
      if (url.pathname === '/callback') {
        const p = pending.get(url.searchParams.get('state'));
        pending.delete(url.searchParams.get('state'));
        if (!p || Date.now() - p.at > 600_000) {
          res.writeHead(400, { 'content-type': 'text/plain' }).end('unknown or expired sign-in: start again\n');
          return;
        }
        const current = new URL(cfg.redirectUri);
        current.search = url.search;
        const tokens = await client.authorizationCodeGrant(oidc, current, {
          pkceCodeVerifier: p.verifier, expectedState: url.searchParams.get('state'), expectedNonce: p.nonce, idTokenExpected: true,
        });
        const claims = tokens.claims();
        const userinfo = await client.fetchUserInfo(oidc, tokens.access_token, claims.sub);
        const id = randomBytes(24).toString('base64url');
        sessions.set(id, { claims, userinfo, idToken: tokens.id_token });
        res.writeHead(302, { location: '/', 'set-cookie': `node_web_session=${id}; Path=/; HttpOnly; SameSite=Lax` }).end();
        return;
      }
      const s = sessions.get(cookieOf(req));
      if (url.pathname === '/' && s) {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify({ email: s.userinfo.email, org_id: s.claims.org_id, org_slug: s.claims.org_slug, roles: s.claims.roles, sid: s.claims.sid }) + '\n');
        return;
      }
      res.writeHead(302, { location: '/login' }).end();
    } catch (err) {
      log(`node-web: ${req.method} ${url.pathname}: ${err.name}: ${err.message}`);
      res.writeHead(502, { 'content-type': 'text/plain' }).end('sign-in failed\n');
    }
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const cfg = config(process.env);
  const app = await createApp(cfg);
  const [host, port] = cfg.listen.split(/:(?=\d+$)/);
  app.listen(Number(port), host, () => console.error(`node-web: listening on http://${cfg.listen}/ (issuer ${cfg.issuer}, client ${cfg.clientId})`));
}

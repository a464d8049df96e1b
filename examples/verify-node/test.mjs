// Runs the example server against an in-process issuer that publishes a
// JWKS of freshly generated keys, with tokens signed the way Gatehouse
// signs them (typ gatehouse-assertion+jwt, kid header).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { generateKeyPair, exportJWK, exportSPKI, SignJWT, base64url } from 'jose';
import { createApp, config } from './server.mjs';

const AUDIENCE = 'app.localhost';
let issuer, issuerServer, app, appURL;
const published = []; // the JWKS
const logs = []; // the app's reasons for each 401

function listen(server) {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`));
  });
}

async function newKey(kid, alg, { publish = true } = {}) {
  const { publicKey, privateKey } = await generateKeyPair(alg);
  if (publish) {
    published.push({ ...(await exportJWK(publicKey)), kid, alg, use: 'sig' });
  }
  return { kid, alg, publicKey, privateKey };
}

// Gatehouse's claims for alice, with overrides.
function sign(key, over = {}, typ = 'gatehouse-assertion+jwt') {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer, aud: AUDIENCE, sub: 'usr_alice',
    email: 'alice@acme.example', name: 'Alice Admin',
    org_id: 'org_acme', org_slug: 'acme', roles: ['admin'], groups: [],
    iat: now, nbf: now, exp: now + 300, jti: 'jti-123',
    ...over,
  };
  const header = { alg: key.alg, kid: key.kid };
  if (typ) header.typ = typ;
  return new SignJWT(claims).setProtectedHeader(header).sign(key.privateKey);
}

async function get(token, path = '/whoami') {
  logs.length = 0;
  const headers = token === undefined ? {} : { 'X-Gatehouse-Jwt-Assertion': token };
  const res = await fetch(appURL + path, { headers });
  const body = await res.text();
  return { status: res.status, body, log: logs.join('\n') };
}

let es, rs, ed, stranger;

before(async () => {
  issuerServer = http.createServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' });
    res.end(JSON.stringify({ keys: published }));
  });
  issuer = await listen(issuerServer);
  es = await newKey('ES256-1', 'ES256');
  rs = await newKey('RS256-1', 'RS256');
  ed = await newKey('EdDSA-1', 'EdDSA');
  stranger = await newKey('ES256-unknown', 'ES256', { publish: false });
  app = createApp({ issuer, audience: AUDIENCE, log: (line) => logs.push(line) });
  appURL = await listen(app);
});

after(() => {
  app?.close();
  issuerServer?.close();
});

test('valid assertion: 200 with the identity', async () => {
  for (const key of [es, rs, ed]) {
    const r = await get(await sign(key));
    assert.equal(r.status, 200, `${key.alg}: ${r.body} ${r.log}`);
    const body = JSON.parse(r.body);
    assert.equal(body.email, 'alice@acme.example');
    assert.equal(body.org, 'acme');
    assert.equal(body.org_id, 'org_acme');
    assert.deepEqual(body.roles, ['admin']);
  }
});

test('expired: 401', async () => {
  const past = Math.floor(Date.now() / 1000) - 600;
  const r = await get(await sign(es, { iat: past, nbf: past, exp: past + 300 }));
  assert.equal(r.status, 401);
  assert.match(r.log, /ERR_JWT_EXPIRED/);
  assert.doesNotMatch(r.body, /alice/);
});

test('wrong audience: 401', async () => {
  const r = await get(await sign(es, { aud: 'globex-app.localhost' }));
  assert.equal(r.status, 401);
  assert.match(r.log, /ERR_JWT_CLAIM_VALIDATION_FAILED .*"aud"/);
});

test('wrong issuer: 401', async () => {
  const r = await get(await sign(es, { iss: 'http://evil.localhost:8080' }));
  assert.equal(r.status, 401);
  assert.match(r.log, /ERR_JWT_CLAIM_VALIDATION_FAILED .*"iss"/);
});

test('missing header or not a JWT: 401', async () => {
  let r = await get(undefined);
  assert.equal(r.status, 401);
  assert.match(r.log, /no X-Gatehouse-Jwt-Assertion header/);
  r = await get('not-a-jwt');
  assert.equal(r.status, 401);
  assert.match(r.log, /ERR_JWS_INVALID/);
});

test("the issuer's other tokens (an ID token, an access token, no typ): 401", async () => {
  for (const typ of ['JWT', 'at+jwt', '']) {
    const r = await get(await sign(es, {}, typ));
    assert.equal(r.status, 401, `typ ${typ}`);
    assert.match(r.log, /ERR_JWT_CLAIM_VALIDATION_FAILED .*"typ"/);
  }
});

test('signed by a key not in the JWKS: 401', async () => {
  const r = await get(await sign(stranger));
  assert.equal(r.status, 401);
  assert.match(r.log, /ERR_JWKS_NO_MATCHING_KEY/);
  // A published kid on a token signed by another key.
  const r2 = await get(await sign({ ...stranger, kid: es.kid }));
  assert.equal(r2.status, 401);
  assert.match(r2.log, /ERR_JWS_SIGNATURE_VERIFICATION_FAILED/);
});

test('alg none and HS256 keyed with the public key: 401', async () => {
  const payload = base64url.encode(JSON.stringify({
    iss: issuer, aud: AUDIENCE, sub: 'usr_alice', email: 'alice@acme.example',
    exp: Math.floor(Date.now() / 1000) + 300,
  }));
  const none = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${payload}.`;
  let r = await get(none);
  assert.equal(r.status, 401);
  assert.match(r.log, /ERR_JOSE_ALG_NOT_ALLOWED/);

  const secret = new TextEncoder().encode(await exportSPKI(es.publicKey));
  const hs = await new SignJWT(JSON.parse(new TextDecoder().decode(base64url.decode(payload))))
    .setProtectedHeader({ alg: 'HS256', kid: es.kid, typ: 'JWT' })
    .sign(secret);
  r = await get(hs);
  assert.equal(r.status, 401);
  assert.match(r.log, /ERR_JOSE_ALG_NOT_ALLOWED/);
});

test('healthz is open', async () => {
  const r = await get(undefined, '/healthz');
  assert.equal(r.status, 200);
});

test('config from the environment', () => {
  assert.deepEqual(config({}), { issuer: 'http://auth.localhost:8080', audience: 'app.localhost', host: '127.0.0.1', port: 9000 });
  assert.deepEqual(
    config({ ISSUER: 'https://auth.example.com/', AUDIENCE: 'wiki.example.com', LISTEN: '[::1]:7000' }),
    { issuer: 'https://auth.example.com', audience: 'wiki.example.com', host: '::1', port: 7000 },
  );
  assert.equal(config({ LISTEN: ':7000' }).host, undefined);
});

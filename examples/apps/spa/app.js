// A single-page app signing in with Gatehouse's OpenID Provider:
// authorization code with PKCE (S256), no client secret, tokens kept in
// memory only (never localStorage); the PKCE verifier, state and nonce
// wait in sessionStorage for the one redirect. The ID token's signature
// (ES256, Gatehouse's default) and claims are checked with WebCrypto.
//
// Settings: ?issuer=...&client_id=... on the page's URL, or the defaults
// of `gatehouse serve --dev` and its demo-spa app.
const params = new URLSearchParams(location.search);
const ISSUER = params.get('issuer') || sessionStorage.getItem('issuer') || 'http://auth.localhost:8080';
const CLIENT_ID = params.get('client_id') || sessionStorage.getItem('client_id') || 'demo-spa';
const REDIRECT_URI = location.origin + '/';

let tokens = null; // in memory: gone when the page is

const $ = (id) => document.getElementById(id);
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const fromB64url = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
const random = () => b64url(crypto.getRandomValues(new Uint8Array(32)));

async function discovery() {
  const res = await fetch(ISSUER + '/.well-known/openid-configuration');
  if (!res.ok) throw new Error('discovery: ' + res.status);
  return res.json();
}

async function signIn() {
  const meta = await discovery();
  const verifier = random(), state = random(), nonce = random();
  const challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem('pkce', JSON.stringify({ verifier, state, nonce }));
  sessionStorage.setItem('issuer', ISSUER);
  sessionStorage.setItem('client_id', CLIENT_ID);
  const u = new URL(meta.authorization_endpoint);
  u.search = new URLSearchParams({ client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, response_type: 'code', scope: 'openid profile email',
    state, nonce, code_challenge: challenge, code_challenge_method: 'S256' }).toString();
  location.assign(u.toString());
}

// verifyIDToken checks an ES256 ID token against the JWKS and its claims.
async function verifyIDToken(meta, idToken, nonce) {
  const [h, p, s] = idToken.split('.');
  const header = JSON.parse(new TextDecoder().decode(fromB64url(h)));
  const claims = JSON.parse(new TextDecoder().decode(fromB64url(p)));
  if (header.alg !== 'ES256') throw new Error('this example checks ES256 only, got ' + header.alg);
  const jwks = await (await fetch(meta.jwks_uri)).json();
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error('unknown key ' + header.kid);
  const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, fromB64url(s), new TextEncoder().encode(h + '.' + p));
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  const now = Date.now() / 1000;
  if (!ok) throw new Error('bad signature');
  if (claims.iss !== meta.issuer || !aud.includes(CLIENT_ID) || claims.exp < now || claims.nonce !== nonce) throw new Error('bad claims');
  return claims;
}

async function finishSignIn(code, state) {
  const saved = JSON.parse(sessionStorage.getItem('pkce') || 'null');
  sessionStorage.removeItem('pkce');
  history.replaceState(null, '', REDIRECT_URI); // the code leaves the address bar
  if (!saved || saved.state !== state) throw new Error('unknown or replayed sign-in');
  const meta = await discovery();
  const res = await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID, code_verifier: saved.verifier }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error('token: ' + body.error + ': ' + (body.error_description || ''));
  const claims = await verifyIDToken(meta, body.id_token, saved.nonce);
  tokens = body;
  const info = await (await fetch(meta.userinfo_endpoint, { headers: { authorization: 'Bearer ' + tokens.access_token } })).json();
  show(claims, info);
}

function show(claims, info) {
  $('status').textContent = 'Signed in as ' + info.email + ' of ' + claims.org_slug + '.';
  $('who').textContent = JSON.stringify({ id_token: claims, userinfo: info }, null, 2);
  $('who').hidden = false;
  $('signin').hidden = true;
  $('signout').hidden = false;
}

async function signOut() {
  const meta = await discovery();
  const u = new URL(meta.end_session_endpoint);
  u.search = new URLSearchParams({ id_token_hint: tokens.id_token, post_logout_redirect_uri: REDIRECT_URI }).toString();
  tokens = null;
  location.assign(u.toString());
}

$('signin').addEventListener('click', () => signIn().catch((e) => { $('status').textContent = 'Error: ' + e.message; }));
$('signout').addEventListener('click', () => signOut().catch((e) => { $('status').textContent = 'Error: ' + e.message; }));
const q = new URLSearchParams(location.search);
if (q.get('error')) {
  $('status').textContent = 'Sign-in refused: ' + q.get('error') + ' ' + (q.get('error_description') || '');
} else if (q.get('code')) {
  finishSignIn(q.get('code'), q.get('state')).catch((e) => { $('status').textContent = 'Error: ' + e.message; });
}

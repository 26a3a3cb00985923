// Dynamic client registration (RFC 7591) and client registration management
// (RFC 7592) interoperability check: registers clients at a running Tether
// server with panva's openid-client (v6) and jose, through their public APIs
// only (nothing patched), uses a registered client at once, manages one with
// plain fetch (GET / PUT / DELETE on its registration_client_uri) and probes
// the registration endpoint with metadata it must refuse. Run by dcr.sh,
// which creates the apps.
//
// Inputs (environment):
//   ISSUER                 e.g. https://localhost:29443
//   PORTAL_CLIENT_ID       client_credentials, client_secret_basic, scope
//   PORTAL_CLIENT_SECRET     client:register: its access tokens are the
//   PORTAL_CLIENT_NAME       initial access tokens for registrations; its
//                            name (app create --name) is used as a client_name
//   NOSCOPE_CLIENT_ID      client_credentials, client_secret_basic, scope
//   NOSCOPE_CLIENT_SECRET    openid only: its tokens must be refused (403)
// TLS: the server's CA must be trusted via NODE_EXTRA_CA_CERTS; verification
// is never disabled.
//
// Output: one `ok - <name>` / `not ok - <name>` line per check (details as
// `#   ` lines), then `N passed, M failed`; exit status 1 when anything failed.

import { randomUUID } from 'node:crypto';
import * as client from 'openid-client';
import * as jose from 'jose';
import { assert, assertEq, check, env, finish, request } from './lib.mjs';

// ---------------------------------------------------------------- inputs

const ISSUER = env('ISSUER');
const PORTAL_CLIENT_ID = env('PORTAL_CLIENT_ID');
const PORTAL_CLIENT_SECRET = env('PORTAL_CLIENT_SECRET');
const PORTAL_CLIENT_NAME = env('PORTAL_CLIENT_NAME');
const NOSCOPE_CLIENT_ID = env('NOSCOPE_CLIENT_ID');
const NOSCOPE_CLIENT_SECRET = env('NOSCOPE_CLIENT_SECRET');

const REGISTRATION_PATH = '/api/identity/oauth2/dcr/v1.1/register';
const REDIRECT_URI = 'https://rp.example/cb'; // never contacted
const RUN = randomUUID().slice(0, 8); // tags the client names of this run

// ---------------------------------------------------------------- harness

function assertSameJson(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`assertion failed: ${what}: expected ${e}, got ${a}`);
}

// ------------------------------------------------------------ plain HTTP
// `request` (lib.mjs) sends with fetch; these read its { status, json, text }.

function seen(r) {
  return `${r.status} ${r.json ? JSON.stringify(r.json) : r.text.slice(0, 300)}`;
}

function expectStatus(r, status, what) {
  assert(r.status === status, `${what}: status ${status} expected, got ${seen(r)}`);
}

// `r` must be an OAuth error response with `status` and error `code`, and a
// JSON body {"error", "error_description"}.
function expectError(r, status, code, what) {
  assert(r.status === status && r.json?.error === code,
    `${what}: ${status} ${code} expected, got ${seen(r)}`);
  assert(typeof r.json.error_description === 'string' && r.json.error_description.length > 0,
    `${what}: error_description present (${r.text})`);
}

// HTTP Basic for the token endpoint (RFC 6749 2.3.1: form-urlencoded parts).
function basic(id, secret) {
  const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

// The OAuth error code and HTTP status of an error openid-client threw for an
// error response (ResponseBodyError, or WWWAuthenticateChallengeError whose
// body is still unread).
async function oauthErrorOf(err) {
  if (err instanceof client.ResponseBodyError) return { error: err.error, status: err.status };
  if (err instanceof client.WWWAuthenticateChallengeError) {
    let error = err.cause?.[0]?.parameters?.error;
    if (!err.response.bodyUsed) {
      const text = await err.response.text().catch(() => '');
      try {
        error = JSON.parse(text).error ?? error;
      } catch {
        // not JSON: keep the challenge's error
      }
    }
    return { error, status: err.status };
  }
  throw err;
}

// ---------------------------------------------------------------- state

let md; // the server's metadata
let jwks; // jose remote key set
let registrationEndpoint;
let initialAccessToken; // portal app's token with scope client:register
let noscopeToken; // a token without client:register
const toDelete = new Map(); // registration_client_uri -> registration_access_token

function needMetadata() {
  assert(md, 'prerequisite failed: no metadata from discovery');
  return md;
}

function needInitialToken() {
  assert(initialAccessToken, 'prerequisite failed: no initial access token (scope client:register)');
  return initialAccessToken;
}

// Plain-fetch registration with the initial access token (`token` null: no
// Authorization header).
async function register(metadata, token = needInitialToken()) {
  const r = await request(registrationEndpoint ?? `${ISSUER}${REGISTRATION_PATH}`,
    { method: 'POST', token, json: metadata });
  // whatever got registered is deleted at the end
  if (r.status === 201 && r.json?.registration_client_uri && r.json.registration_access_token) {
    toDelete.set(r.json.registration_client_uri, r.json.registration_access_token);
  }
  return r;
}

// A code-flow client's metadata, valid on its own; probes override members.
// Every probe gets a name of its own (the server keeps client names unique).
let probes = 0;
function codeClient(extra = {}) {
  probes += 1;
  return {
    client_name: `dcr-probe-${RUN}-${probes}`,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...extra,
  };
}

// ---------------------------------------------------------------- discovery

await check('discovery: registration_endpoint advertised at ISSUER' + REGISTRATION_PATH, async (note) => {
  const config = await client.discovery(new URL(ISSUER), PORTAL_CLIENT_ID, undefined,
    client.ClientSecretBasic(PORTAL_CLIENT_SECRET));
  md = config.serverMetadata();
  assertEq(md.issuer, ISSUER, 'issuer');
  assertEq(md.registration_endpoint, `${ISSUER}${REGISTRATION_PATH}`, 'registration_endpoint');
  registrationEndpoint = md.registration_endpoint;
  jwks = jose.createRemoteJWKSet(new URL(md.jwks_uri));
  note(`token_endpoint_auth_methods_supported ${JSON.stringify(md.token_endpoint_auth_methods_supported)}`);
});

await check('initial access token: client_credentials (openid-client, client_secret_basic) with scope client:register', async () => {
  const config = new client.Configuration(needMetadata(), PORTAL_CLIENT_ID, undefined,
    client.ClientSecretBasic(PORTAL_CLIENT_SECRET));
  const res = await client.clientCredentialsGrant(config, { scope: 'client:register' });
  assert(res.access_token, 'access_token present');
  assert((res.scope ?? '').split(' ').includes('client:register'),
    `the token has scope client:register (scope ${JSON.stringify(res.scope)})`);
  initialAccessToken = res.access_token;
});

await check('a token without client:register: client_credentials of the openid-only app', async () => {
  const config = new client.Configuration(needMetadata(), NOSCOPE_CLIENT_ID, undefined,
    client.ClientSecretBasic(NOSCOPE_CLIENT_SECRET));
  const res = await client.clientCredentialsGrant(config, { scope: 'openid' });
  assert(res.access_token, 'access_token present');
  noscopeToken = res.access_token;
});

// ------------------------------ client 1: private_key_jwt via openid-client

const pkjwt = await jose.generateKeyPair('ES256', { extractable: true });
const pkjwtPublic = await jose.exportJWK(pkjwt.publicKey);
const pkjwtKid = await jose.calculateJwkThumbprint(pkjwtPublic);
let pkjwtConfig; // the Configuration dynamicClientRegistration returned
let pkjwtToken; // its client_credentials access token

await check('openid-client dynamicClientRegistration: private_key_jwt client (ES256 jwks, client_credentials, access_token_type jwt)', async (note) => {
  needMetadata();
  pkjwtConfig = await client.dynamicClientRegistration(new URL(ISSUER), {
    client_name: `dcr-pkjwt-${RUN}`,
    grant_types: ['client_credentials'],
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [{ ...pkjwtPublic, kid: pkjwtKid, alg: 'ES256', use: 'sig' }] },
    access_token_type: 'jwt',
  }, client.PrivateKeyJwt({ key: pkjwt.privateKey, kid: pkjwtKid }), { initialAccessToken: needInitialToken() });
  const m = pkjwtConfig.clientMetadata();
  if (m.registration_client_uri && m.registration_access_token) {
    toDelete.set(m.registration_client_uri, m.registration_access_token);
  }
  assert(typeof m.client_id === 'string' && m.client_id.length > 0, 'client_id issued');
  assertEq(m.token_endpoint_auth_method, 'private_key_jwt', 'token_endpoint_auth_method');
  assertSameJson(m.grant_types, ['client_credentials'], 'grant_types');
  assertEq(m.access_token_type, 'jwt', 'access_token_type');
  assert(!('client_secret' in m), `no client_secret for a private_key_jwt client (${m.client_secret})`);
  assert(typeof m.registration_access_token === 'string' && m.registration_access_token.length > 0,
    'registration_access_token issued');
  assertEq(m.registration_client_uri, `${registrationEndpoint}/${m.client_id}`, 'registration_client_uri');
  assertEq(m.jwks?.keys?.[0]?.kid, pkjwtKid, 'jwks echoed with the kid');
  note(`client_id ${m.client_id}`);
});

function needPkjwt() {
  assert(pkjwtConfig, 'prerequisite failed: the private_key_jwt client was not registered');
  return pkjwtConfig;
}

await check('the returned Configuration used at once: clientCredentialsGrant (private_key_jwt) -> JWT access token (at+jwt, client_id)', async (note) => {
  const config = needPkjwt();
  const res = await client.clientCredentialsGrant(config, { scope: 'openid' });
  assert(res.access_token, 'access_token present');
  assertEq(res.token_type.toLowerCase(), 'bearer', 'token_type');
  const { payload, protectedHeader } = await jose.jwtVerify(res.access_token, jwks, {
    issuer: ISSUER,
    typ: 'at+jwt',
    requiredClaims: ['iss', 'exp', 'iat', 'jti', 'client_id'],
  });
  assertEq(payload.client_id, config.clientMetadata().client_id, 'access token client_id');
  pkjwtToken = res.access_token;
  note(`alg ${protectedHeader.alg}, scope ${JSON.stringify(payload.scope ?? res.scope)}`);
});

await check('registered private_key_jwt client introspects its own token (openid-client) -> active', async () => {
  const config = needPkjwt();
  assert(pkjwtToken, 'prerequisite failed: no access token of the private_key_jwt client');
  const out = await client.tokenIntrospection(config, pkjwtToken);
  assertEq(out.active, true, `active (${JSON.stringify(out)})`);
  assertEq(out.client_id, config.clientMetadata().client_id, 'introspection client_id');
});

// --------------------------- client 2: code flow, client_secret_basic

let codeConfig;
let code; // its registration response as openid-client stored it

await check('openid-client dynamicClientRegistration: code-flow client (client_secret_basic, https redirect) -> client_secret, client_secret_expires_at 0', async (note) => {
  needMetadata();
  codeConfig = await client.dynamicClientRegistration(new URL(ISSUER), {
    client_name: `dcr-code-${RUN}`,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }, undefined, { initialAccessToken: needInitialToken() });
  code = { ...codeConfig.clientMetadata() };
  if (code.registration_client_uri && code.registration_access_token) {
    toDelete.set(code.registration_client_uri, code.registration_access_token);
  }
  assert(typeof code.client_secret === 'string' && code.client_secret.length >= 32,
    `client_secret issued (${JSON.stringify(code.client_secret)})`);
  assertEq(code.client_secret_expires_at, 0, 'client_secret_expires_at');
  assertSameJson(code.redirect_uris, [REDIRECT_URI], 'redirect_uris');
  assertEq(code.token_endpoint_auth_method, 'client_secret_basic', 'token_endpoint_auth_method');
  assert(typeof code.registration_access_token === 'string' && code.registration_access_token.length > 0,
    'registration_access_token issued');
  assertEq(code.registration_client_uri, `${registrationEndpoint}/${code.client_id}`, 'registration_client_uri');
  note(`client_id ${code.client_id}, scope ${JSON.stringify(code.scope)}`);
});

function needCode() {
  assert(code?.registration_client_uri, 'prerequisite failed: the code-flow client was not registered');
  return code;
}

// ------------------------------------------- RFC 7592 on client 2 (fetch)

// The members a client sends in a PUT: what the server returned, minus the
// ones RFC 7592 2.2 says the client MUST NOT send.
function putBody(current, extra = {}) {
  const body = { ...current, ...extra };
  for (const k of ['registration_access_token', 'registration_client_uri', 'client_secret_expires_at', 'client_id_issued_at']) {
    delete body[k];
  }
  return body;
}

let codeRead; // GET's metadata

await check('RFC 7592 GET registration_client_uri -> 200, the registered metadata (no client_secret, no registration_access_token)', async () => {
  const c = needCode();
  const r = await request(c.registration_client_uri, { token: c.registration_access_token });
  expectStatus(r, 200, 'GET');
  const m = r.json;
  assert(m && typeof m === 'object', `JSON body (${r.text.slice(0, 200)})`);
  for (const k of ['client_id', 'client_name', 'token_endpoint_auth_method', 'registration_client_uri', 'scope',
    'id_token_signed_response_alg', 'access_token_type', 'token_binding_type']) {
    assertSameJson(m[k], c[k], `GET ${k}`);
  }
  for (const k of ['redirect_uris', 'grant_types', 'response_types']) assertSameJson(m[k], c[k], `GET ${k}`);
  assert(!('client_secret' in m), 'GET carries no client_secret');
  assert(!('registration_access_token' in m), 'GET carries no registration_access_token');
  codeRead = m;
});

await check('RFC 7592 PUT with a new client_name -> 200; GET afterwards shows it', async (note) => {
  const c = needCode();
  assert(codeRead, 'prerequisite failed: no GET metadata');
  const name = `dcr-code-renamed-${RUN}`;
  const r = await request(c.registration_client_uri,
    { method: 'PUT', token: c.registration_access_token, json: putBody(codeRead, { client_name: name }) });
  expectStatus(r, 200, 'PUT');
  assertEq(r.json?.client_name, name, 'PUT response client_name');
  assertEq(r.json?.client_id, c.client_id, 'PUT response client_id');
  if (r.json.registration_access_token) {
    note('PUT issued a new registration_access_token (RFC 7592 allows it); using it from now on');
    c.registration_access_token = r.json.registration_access_token;
    toDelete.set(c.registration_client_uri, c.registration_access_token);
  }
  if (r.json.client_secret && r.json.client_secret !== c.client_secret) {
    note('PUT issued a new client_secret; using it from now on');
    c.client_secret = r.json.client_secret;
  }
  const g = await request(c.registration_client_uri, { token: c.registration_access_token });
  expectStatus(g, 200, 'GET after PUT');
  assertEq(g.json?.client_name, name, 'GET client_name after PUT');
  assertSameJson(g.json?.redirect_uris, [REDIRECT_URI], 'GET redirect_uris after PUT');
  codeRead = g.json;
});

await check('RFC 7592 PUT with another client_id -> 400 invalid_client_metadata', async () => {
  const c = needCode();
  assert(codeRead, 'prerequisite failed: no GET metadata');
  const r = await request(c.registration_client_uri, {
    method: 'PUT',
    token: c.registration_access_token,
    json: putBody(codeRead, { client_id: PORTAL_CLIENT_ID, client_name: `dcr-hijack-${RUN}` }),
  });
  expectError(r, 400, 'invalid_client_metadata', 'PUT with another client_id');
  const g = await request(c.registration_client_uri, { token: c.registration_access_token });
  assertEq(g.json?.client_name, codeRead.client_name, 'client_name unchanged after the refused PUT');
});

await check('RFC 7592 GET with a wrong registration access token -> 401', async (note) => {
  const c = needCode();
  const wrong = jose.base64url.encode(crypto.getRandomValues(new Uint8Array(32)));
  const r = await request(c.registration_client_uri, { token: wrong });
  expectStatus(r, 401, 'GET with a wrong token');
  // another client's registration access token must not work either
  const other = pkjwtConfig?.clientMetadata().registration_access_token;
  if (other) {
    const r2 = await request(c.registration_client_uri, { token: other });
    expectStatus(r2, 401, 'GET with the private_key_jwt client\'s registration access token');
  }
  const r3 = await request(c.registration_client_uri, { token: initialAccessToken });
  expectStatus(r3, 401, 'GET with the initial access token');
  note(`WWW-Authenticate: ${r.headers.get('www-authenticate')}`);
});

// A code grant with a made-up code: with the client authenticated the
// server answers invalid_grant, so invalid_client can only mean the
// credentials are no longer accepted.
async function bogusCodeGrant(c) {
  return request(needMetadata().token_endpoint, {
    method: 'POST',
    headers: { authorization: basic(c.client_id, c.client_secret) },
    form: {
      grant_type: 'authorization_code',
      code: jose.base64url.encode(crypto.getRandomValues(new Uint8Array(32))),
      redirect_uri: REDIRECT_URI,
    },
  });
}

let codeDeleted = false;

await check('RFC 7592 DELETE -> 204 (control before: its client_secret authenticates at the token endpoint)', async () => {
  const c = needCode();
  const control = await bogusCodeGrant(c);
  expectError(control, 400, 'invalid_grant', 'control: made-up code with the client\'s secret');
  const r = await request(c.registration_client_uri, { method: 'DELETE', token: c.registration_access_token });
  expectStatus(r, 204, 'DELETE');
  assertEq(r.text, '', 'DELETE body');
  codeDeleted = true;
  toDelete.delete(c.registration_client_uri);
});

await check('after DELETE: GET registration_client_uri -> 401', async () => {
  const c = needCode();
  assert(codeDeleted, 'prerequisite failed: the client was not deleted');
  const r = await request(c.registration_client_uri, { token: c.registration_access_token });
  expectStatus(r, 401, 'GET after DELETE');
});

await check('after DELETE: token request with the old client_secret -> 401 invalid_client', async () => {
  const c = needCode();
  assert(codeDeleted, 'prerequisite failed: the client was not deleted');
  const r = await bogusCodeGrant(c);
  expectError(r, 401, 'invalid_client', 'token request after DELETE');
});

// --------------------------------- client 1 deleted: openid-client refused

await check('private_key_jwt client: RFC 7592 DELETE -> 204; clientCredentialsGrant afterwards -> 401 invalid_client', async () => {
  const config = needPkjwt();
  const m = config.clientMetadata();
  const r = await request(m.registration_client_uri, { method: 'DELETE', token: m.registration_access_token });
  expectStatus(r, 204, 'DELETE');
  toDelete.delete(m.registration_client_uri);
  let err;
  try {
    await client.clientCredentialsGrant(config, { scope: 'openid' });
  } catch (e) {
    err = e;
  }
  assert(err, 'clientCredentialsGrant after DELETE succeeded');
  const { error, status } = await oauthErrorOf(err);
  assertEq(status, 401, `status (error ${error})`);
  assertEq(error, 'invalid_client', 'error');
});

// ------------------------------------------ the registration endpoint's guard

await check('registration without a token -> 401 invalid_token with WWW-Authenticate: Bearer', async (note) => {
  const r = await register(codeClient(), null); // no Authorization header
  expectError(r, 401, 'invalid_token', 'registration without a token');
  const challenge = r.headers.get('www-authenticate') ?? '';
  assert(/^Bearer(\s|$)/i.test(challenge), `WWW-Authenticate is a Bearer challenge (got ${JSON.stringify(challenge)})`);
  note(`WWW-Authenticate: ${challenge}`);
});

await check('registration with a made-up token -> 401 invalid_token', async () => {
  const r = await register(codeClient(), jose.base64url.encode(crypto.getRandomValues(new Uint8Array(32))));
  expectError(r, 401, 'invalid_token', 'registration with a made-up token');
});

await check('registration with a token lacking client:register -> 403 insufficient_scope', async (note) => {
  assert(noscopeToken, 'prerequisite failed: no token of the openid-only app');
  const r = await register(codeClient(), noscopeToken);
  expectError(r, 403, 'insufficient_scope', 'registration with an openid-only token');
  note(`WWW-Authenticate: ${r.headers.get('www-authenticate')}`);
});

// ------------------------------------------------------ refused metadata

await check('control: plain-fetch registration of valid metadata -> 201, Location = registration_client_uri', async () => {
  const r = await register(codeClient());
  expectStatus(r, 201, 'registration');
  assert(r.json?.registration_client_uri, `registration_client_uri present (${r.text.slice(0, 200)})`);
  assertEq(r.headers.get('location'), r.json.registration_client_uri, 'Location header');
  assert((r.headers.get('content-type') ?? '').startsWith('application/json'),
    `content-type application/json (got ${r.headers.get('content-type')})`);
});

await check('control: http redirect URI on a loopback address (http://127.0.0.1:8080/cb) -> 201', async () => {
  const r = await register(codeClient({ redirect_uris: ['http://127.0.0.1:8080/cb'] }));
  expectStatus(r, 201, 'registration');
});

// client_name is display metadata (RFC 7591 2: "Human-readable string name
// of the client to be presented to the end-user"): two parties may well pick
// the same one, and the answer must not reveal other clients.
await check('client_name already used by another registration -> 201 (display name, not an identifier)', async (note) => {
  const name = `dcr-same-name-${RUN}`;
  const first = await register(codeClient({ client_name: name }));
  expectStatus(first, 201, 'first registration');
  const second = await register(codeClient({ client_name: name }));
  if (second.status === 201) note(`second client_name ${JSON.stringify(second.json.client_name)}`);
  expectStatus(second, 201, 'second registration with the same client_name');
});

await check('client_name of an admin-created app: the answer does not reveal that app\'s client_id', async (note) => {
  const r = await register(codeClient({ client_name: PORTAL_CLIENT_NAME }));
  note(`answered ${seen(r).slice(0, 300)}`);
  assert(!r.text.includes(PORTAL_CLIENT_ID), `the response names the portal app's client_id ${PORTAL_CLIENT_ID}`);
});

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const refused = [
  ['grant_types with password', { grant_types: ['authorization_code', 'password'] }, 'invalid_client_metadata'],
  ['grant_types with token exchange', { grant_types: ['authorization_code', TOKEN_EXCHANGE] }, 'invalid_client_metadata'],
  ['introspect_any: true', { introspect_any: true }, 'invalid_client_metadata'],
  ['exchange_from (the portal app)', { exchange_from: [PORTAL_CLIENT_ID] }, 'invalid_client_metadata'],
  ['scope admin:read', { scope: 'openid admin:read' }, 'invalid_client_metadata'],
  ['scope admin:write', { scope: 'openid admin:write' }, 'invalid_client_metadata'],
  ['scope client:register', { scope: 'openid client:register' }, 'invalid_client_metadata'],
  ['scope outside the allowed set (openid payments:write)', { scope: 'openid payments:write' }, 'invalid_client_metadata'],
];
for (const [what, uri] of [
  ['http (not https)', 'http://rp.example/jwks.json'],
  ['loopback https://127.0.0.1/x', 'https://127.0.0.1/x'],
  ['link-local https://169.254.169.254/', 'https://169.254.169.254/'],
  ['https://localhost/x', 'https://localhost/x'],
  ['private https://10.1.2.3/x', 'https://10.1.2.3/x'],
  ['private https://192.168.1.1/x', 'https://192.168.1.1/x'],
  ['IPv6 loopback https://[::1]/x', 'https://[::1]/x'],
]) {
  refused.push([`jwks_uri ${what}`,
    { token_endpoint_auth_method: 'private_key_jwt', jwks_uri: uri }, 'invalid_client_metadata']);
}
for (const [what, uri] of [
  ['http (not https)', 'http://rp.example/logout'],
  ['loopback https://127.0.0.1/x', 'https://127.0.0.1/x'],
  ['link-local https://169.254.169.254/', 'https://169.254.169.254/'],
  ['https://localhost/x', 'https://localhost/x'],
  ['private https://10.1.2.3/x', 'https://10.1.2.3/x'],
  ['private https://192.168.1.1/x', 'https://192.168.1.1/x'],
  ['IPv6 loopback https://[::1]/x', 'https://[::1]/x'],
]) {
  refused.push([`backchannel_logout_uri ${what}`, { backchannel_logout_uri: uri }, 'invalid_client_metadata']);
}
refused.push(
  ['redirect_uris http on a non-loopback host', { redirect_uris: ['http://rp.example/cb'] }, 'invalid_redirect_uri'],
  ['redirect_uris with a fragment', { redirect_uris: ['https://rp.example/cb#frag'] }, 'invalid_redirect_uri'],
  ['redirect_uris relative', { redirect_uris: ['/cb'] }, 'invalid_redirect_uri'],
);

for (const [what, extra, code] of refused) {
  await check(`refused: ${what} -> 400 ${code}`, async (note) => {
    const r = await register(codeClient(extra));
    expectError(r, 400, code, what);
    note(r.json.error_description);
  });
}

// ------------------------------------------------------------- clean-up
// Clients a failed check left registered.

for (const [uri, token] of toDelete) {
  const r = await request(uri, { method: 'DELETE', token }).catch((e) => ({ status: e.message }));
  if (r.status !== 204) console.log(`# clean-up: DELETE ${uri} answered ${r.status}`);
}

finish();

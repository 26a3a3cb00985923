// FAPI 2.0 Security Profile interoperability check: drives a running Tether
// server with panva's openid-client (v6) and jose, through their public APIs
// only (nothing patched). Run by fapi2.sh, which creates the user and apps.
//
// Inputs (environment):
//   ISSUER              e.g. https://localhost:29443
//   REDIRECT_URI        registered for both apps (https, never contacted: the
//                       code is read from the Location header)
//   USERNAME, PASSWORD  an existing user
//   DPOP_CLIENT_ID      --profile fapi2, private_key_jwt, --binding dpop, JWT
//                         access tokens, authorization_code + refresh_token,
//                         back-channel logout to BACKCHANNEL_PORT with sid
//   DPOP_PRIVATE_JWK    that app's ES256 private JWK (JSON) whose `kid` names
//                         the public key registered for it (app create --jwks)
//   MTLS_CLIENT_ID      --profile fapi2, self_signed_tls_client_auth,
//                         --binding certificate, JWT access tokens,
//                         authorization_code + refresh_token
//   MTLS_CERT_FILE      that app's self-signed certificate (PEM, registered
//   MTLS_KEY_FILE         with --cert-file) and its private key (PEM)
//   BACKCHANNEL_PORT    this script listens on http://127.0.0.1:PORT/backchannel
//                         for back-channel logout tokens
// TLS: the server's CA must be trusted via NODE_EXTRA_CA_CERTS; verification
// is never disabled. The mTLS requests go through node:https with the client
// certificate (openid-client's customFetch), every other request through fetch.
//
// Output: one `ok - <name>` / `not ok - <name>` line per check (details as
// `#   ` lines), then `N passed, M failed`; exit status 1 when anything failed.

import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import * as client from 'openid-client';
import * as jose from 'jose';
import {
  assert, assertEq, Browser, check, codeFlow, env, finish, halfHash, pageSummary, parseJwk, redeem, request,
} from './lib.mjs';

// ---------------------------------------------------------------- inputs

const ISSUER = env('ISSUER');
const REDIRECT_URI = env('REDIRECT_URI');
const USERNAME = env('USERNAME');
const PASSWORD = env('PASSWORD');
const DPOP_CLIENT_ID = env('DPOP_CLIENT_ID');
const DPOP_PRIVATE_JWK = parseJwk('DPOP_PRIVATE_JWK');
const MTLS_CLIENT_ID = env('MTLS_CLIENT_ID');
const MTLS_CERT = readFileSync(env('MTLS_CERT_FILE'), 'utf8');
const MTLS_KEY = readFileSync(env('MTLS_KEY_FILE'), 'utf8');
const BACKCHANNEL_PORT = Number(env('BACKCHANNEL_PORT'));

const SCOPE = 'openid profile email';
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

// Sign-in through the login form and the code flow (lib.mjs) for USERNAME.
const { authorize, newAuthorization } = codeFlow({
  issuer: ISSUER, username: USERNAME, password: PASSWORD, redirectUri: REDIRECT_URI, scope: SCOPE,
});

// ------------------------------------------- openid-client configurations

// Records every request openid-client makes through `config` (URL, method,
// headers, body, response status and JSON body) in the returned array, and
// sends it with `send` (fetch, or the mTLS fetch below).
function recordRequests(config, send = fetch) {
  const log = [];
  config[client.customFetch] = async (url, options) => {
    const res = await send(url, options);
    let body = options.body;
    if (body instanceof URLSearchParams) body = new URLSearchParams(body);
    else if (typeof body === 'string') body = new URLSearchParams(body);
    log.push({
      url: String(url),
      method: options.method,
      headers: new Headers(options.headers),
      body,
      status: res.status,
      json: await res.clone().json().catch(() => undefined),
    });
    return res;
  };
  return log;
}

// A fetch (the subset openid-client's customFetch uses) that presents the
// client certificate: node:https with the certificate and key. Server
// certificates are verified against Node's trust store, NODE_EXTRA_CA_CERTS
// included.
const mtlsAgent = new https.Agent({ cert: MTLS_CERT, key: MTLS_KEY, keepAlive: false });
function mtlsFetch(url, options = {}) {
  return new Promise((resolve, reject) => {
    let { body } = options;
    if (body instanceof URLSearchParams) body = body.toString();
    else if (body instanceof ArrayBuffer) body = Buffer.from(body);
    else if (ArrayBuffer.isView(body)) body = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    else if (body !== undefined && body !== null && typeof body !== 'string') {
      reject(new TypeError(`mtlsFetch: unsupported body type ${Object.prototype.toString.call(body)}`));
      return;
    }
    const req = https.request(new URL(url), {
      method: options.method ?? 'GET',
      headers: Object.fromEntries(new Headers(options.headers)),
      agent: mtlsAgent,
      signal: options.signal,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const headers = new Headers();
        for (let i = 0; i < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i], res.rawHeaders[i + 1]);
        const nullBody = [101, 204, 205, 304].includes(res.statusCode);
        resolve(new Response(nullBody ? null : Buffer.concat(chunks), {
          status: res.statusCode,
          statusText: res.statusMessage,
          headers,
        }));
      });
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

// The pushed request in `log` (the last one): status 201, redirect_uri, PKCE
// S256 pushed; the authorization URL carries only client_id and request_uri.
function checkPushed(log, parEndpoint, auth, clientId) {
  const pushes = log.filter((r) => r.url === parEndpoint);
  assertEq(pushes.length, 1, `number of requests to ${parEndpoint}`);
  const push = pushes[0];
  assertEq(push.status, 201, `PAR response status (${JSON.stringify(push.json)})`);
  assertEq(push.body.get('redirect_uri'), REDIRECT_URI, 'redirect_uri pushed');
  assertEq(push.body.get('code_challenge_method'), 'S256', 'code_challenge_method pushed');
  assertEq(push.body.get('code_challenge'), auth.codeChallenge, 'code_challenge pushed');
  assertEq([...auth.url.searchParams.keys()].sort().join(' '), 'client_id request_uri', 'authorization URL parameters');
  assertEq(auth.url.searchParams.get('client_id'), clientId, 'authorization URL client_id');
  assertEq(auth.url.searchParams.get('request_uri'), push.json?.request_uri, 'authorization URL request_uri is the pushed one');
  return push;
}

// The callback carries iss = the issuer (RFC 9207; openid-client checks it as
// well, and requires it since discovery advertises support).
function checkCallbackIss(callback) {
  assertEq(callback.searchParams.get('iss'), ISSUER, `iss in the authorization response (${callback.search})`);
}

// Verifies a JWT access token (RFC 9068) with jose against the server's JWKS
// and returns its claims.
async function verifyAccessToken(token, clientId) {
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    issuer: ISSUER,
    typ: 'at+jwt',
    requiredClaims: ['iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti'],
  });
  assert(protectedHeader.kid, 'kid in the access token header');
  assertEq(payload.client_id, clientId, 'access token client_id');
  return payload;
}

// The ID token openid-client validated (signature included, with
// enableNonRepudiationChecks; alg pinned to ES256 by the client metadata).
function checkIdToken(res, auth, clientId) {
  assert(res.id_token, 'id_token present');
  const { alg } = jose.decodeProtectedHeader(res.id_token);
  assertEq(alg, 'ES256', 'ID token alg');
  const claims = res.claims();
  assertEq(claims.iss, ISSUER, 'ID token iss');
  assertEq(claims.nonce, auth.nonce, 'ID token nonce');
  assert([claims.aud].flat().includes(clientId), `ID token aud includes ${clientId}`);
  assert(typeof claims.sid === 'string' && claims.sid.length > 0, 'ID token sid present');
  assert(typeof claims.sub === 'string' && claims.sub.length > 0, 'ID token sub present');
  assertEq(claims.at_hash, halfHash(alg, res.access_token), 'ID token at_hash');
  return claims;
}

// The client assertion openid-client sent in `request` (private_key_jwt):
// aud is exactly the issuer string, as FAPI 2.0 requires.
function checkSentAssertion(request) {
  const assertion = request.body?.get('client_assertion');
  assert(assertion, `client_assertion sent to ${request.url}`);
  const { alg, kid } = jose.decodeProtectedHeader(assertion);
  assertEq(alg, 'ES256', 'client assertion alg');
  assertEq(kid, DPOP_PRIVATE_JWK.kid, 'client assertion kid');
  assertEq(jose.decodeJwt(assertion).aud, ISSUER, 'client assertion aud sent by openid-client');
}

// ----------------------------------------------- back-channel logout receiver
// http://127.0.0.1:BACKCHANNEL_PORT: records every request and answers a POST
// with 200 (anything else with 405).

const logoutRequests = [];
let logoutWaiters = [];
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    logoutRequests.push({
      method: req.method,
      url: req.url,
      contentType: req.headers['content-type'] ?? '',
      body: Buffer.concat(chunks).toString('utf8'),
    });
    res.writeHead(req.method === 'POST' ? 200 : 405, { 'cache-control': 'no-store' });
    res.end();
    const waiters = logoutWaiters;
    logoutWaiters = [];
    for (const w of waiters) w();
  });
});
await new Promise((resolve, reject) => {
  receiver.once('error', reject);
  receiver.listen(BACKCHANNEL_PORT, '127.0.0.1', resolve);
});

// Resolves when the receiver has at least `n` requests or after `ms`.
function waitForLogoutRequests(n, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const poll = () => {
      if (logoutRequests.length >= n) {
        clearTimeout(timer);
        resolve();
      } else {
        logoutWaiters.push(poll);
      }
    };
    poll();
  });
}

// ---------------------------------------------------------------- checks

const dpopClientKey = { key: await jose.importJWK(DPOP_PRIVATE_JWK, 'ES256'), kid: DPOP_PRIVATE_JWK.kid };
// openid-client pins the ID token alg to this client metadata value.
const CLIENT_METADATA = { id_token_signed_response_alg: 'ES256' };

let md; // the server's metadata
let jwks; // jose remote key set

await check('discovery: metadata fetched and issuer matches', async () => {
  const config = await client.discovery(new URL(ISSUER), DPOP_CLIENT_ID, CLIENT_METADATA,
    client.PrivateKeyJwt(dpopClientKey));
  md = config.serverMetadata();
  assertEq(md.issuer, ISSUER, 'issuer');
  for (const ep of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint', 'end_session_endpoint']) {
    assert(typeof md[ep] === 'string' && md[ep].startsWith('https://'), `metadata has ${ep}`);
  }
  jwks = jose.createRemoteJWKSet(new URL(md.jwks_uri));
});

function needMetadata() {
  assert(md, 'prerequisite failed: no metadata from discovery');
  return md;
}

await check('discovery: authorization_response_iss_parameter_supported is true (RFC 9207)', async () => {
  assertEq(needMetadata().authorization_response_iss_parameter_supported, true,
    'authorization_response_iss_parameter_supported');
});

await check('discovery: backchannel_logout_supported and backchannel_logout_session_supported are true', async () => {
  assertEq(needMetadata().backchannel_logout_supported, true, 'backchannel_logout_supported');
  assertEq(md.backchannel_logout_session_supported, true, 'backchannel_logout_session_supported');
});

await check('discovery: pushed_authorization_request_endpoint advertised (RFC 9126)', async () => {
  const ep = needMetadata().pushed_authorization_request_endpoint;
  assert(typeof ep === 'string' && ep.startsWith(`${ISSUER}/`),
    `pushed_authorization_request_endpoint is under the issuer (${JSON.stringify(ep)})`);
});

await check('discovery: dpop_signing_alg_values_supported includes ES256 (RFC 9449)', async () => {
  const algs = needMetadata().dpop_signing_alg_values_supported;
  assert(Array.isArray(algs) && algs.includes('ES256'),
    `dpop_signing_alg_values_supported includes ES256 (${JSON.stringify(algs)})`);
});

// ------------------------------------------------ the DPoP client (private_key_jwt)

let dpopConfig;
let dpopLog;
let dpopKeyPair;
let dpopHandle;
let dpopJkt;
let dpopBrowser;
let dpopTokens; // the code grant's response
let dpopAuth; // its authorization request (state, nonce, PKCE)
let dpopRefreshed; // the first refresh's response

function dpopClient() {
  const config = new client.Configuration(needMetadata(), DPOP_CLIENT_ID, CLIENT_METADATA,
    client.PrivateKeyJwt(dpopClientKey));
  client.enableNonRepudiationChecks(config);
  const log = recordRequests(config);
  return { config, log };
}

await check('DPoP client: PAR (PKCE S256, DPoP proof, private_key_jwt) + login; code with iss; code grant with DPoP', async (note) => {
  ({ config: dpopConfig, log: dpopLog } = dpopClient());
  dpopKeyPair = await client.randomDPoPKeyPair('ES256');
  dpopHandle = client.getDPoPHandle(dpopConfig, dpopKeyPair);
  dpopJkt = await jose.calculateJwkThumbprint(await jose.exportJWK(dpopKeyPair.publicKey));

  const auth = await newAuthorization(dpopConfig, { par: true, dpop: dpopHandle });
  dpopAuth = auth;
  const push = checkPushed(dpopLog, md.pushed_authorization_request_endpoint, auth, DPOP_CLIENT_ID);
  assert(push.headers.get('dpop'), 'openid-client sent a DPoP proof with the push');
  checkSentAssertion(push);

  dpopBrowser = new Browser();
  const callback = await authorize(dpopBrowser, auth.url, { expectLogin: true });
  assert(dpopBrowser.cookies.has('tether_session'), 'tether_session cookie set after login');
  checkCallbackIss(callback);

  const before = dpopLog.length;
  dpopTokens = await redeem(dpopConfig, callback, auth, { DPoP: dpopHandle });
  const tokenRequest = dpopLog.slice(before).find((r) => r.url === md.token_endpoint);
  assert(tokenRequest, `openid-client posted to the token endpoint ${md.token_endpoint}`);
  assert(tokenRequest.headers.get('dpop'), 'openid-client sent a DPoP proof with the code grant');
  checkSentAssertion(tokenRequest);
  assert(dpopTokens.access_token, 'access_token present');
  assert(dpopTokens.refresh_token, 'refresh_token present');
  note(`token_type ${dpopTokens.token_type}, expires_in ${dpopTokens.expires_in}`);
});

function needDpop() {
  assert(dpopTokens, 'prerequisite failed: no tokens from the DPoP client\'s code grant');
  return dpopTokens;
}

await check('DPoP client: access token is a JWT bound to the DPoP key (cnf.jkt), token_type DPoP', async () => {
  const res = needDpop();
  assertEq(res.token_type.toLowerCase(), 'dpop', 'token_type');
  const at = await verifyAccessToken(res.access_token, DPOP_CLIENT_ID);
  assertEq(at.cnf?.jkt, dpopJkt, 'cnf.jkt is the thumbprint of the DPoP key');
});

await check('DPoP client: ID token validated by openid-client (signature, nonce, at_hash), alg ES256', async () => {
  checkIdToken(needDpop(), dpopAuth, DPOP_CLIENT_ID);
});

await check('DPoP client: userinfo with DPoP', async () => {
  const res = needDpop();
  const sub = res.claims().sub;
  const info = await client.fetchUserInfo(dpopConfig, res.access_token, sub, { DPoP: dpopHandle });
  assertEq(info.sub, sub, 'userinfo sub');
  assert(typeof info.email === 'string' && info.email.includes('@'), `email claim present (${JSON.stringify(info)})`);
});

await check('DPoP client: refresh with DPoP returns the SAME refresh token (no rotation)', async () => {
  const res = needDpop();
  dpopRefreshed = await client.refreshTokenGrant(dpopConfig, res.refresh_token, undefined, { DPoP: dpopHandle });
  assert(dpopRefreshed.access_token, 'access_token present');
  assertEq(dpopRefreshed.token_type.toLowerCase(), 'dpop', 'token_type');
  const at = await verifyAccessToken(dpopRefreshed.access_token, DPOP_CLIENT_ID);
  assertEq(at.cnf?.jkt, dpopJkt, 'refreshed access token cnf.jkt');
  assertEq(dpopRefreshed.refresh_token, res.refresh_token, 'refresh_token in the refresh response');
});

await check('DPoP client: refreshing again with the same refresh token works; new access token, same jkt', async () => {
  const res = needDpop();
  assert(dpopRefreshed, 'prerequisite failed: the first refresh did not succeed');
  const again = await client.refreshTokenGrant(dpopConfig, res.refresh_token, undefined, { DPoP: dpopHandle });
  assert(again.access_token, 'access_token present');
  assert(again.access_token !== dpopRefreshed.access_token && again.access_token !== res.access_token,
    'a new access token');
  const at = await verifyAccessToken(again.access_token, DPOP_CLIENT_ID);
  assertEq(at.cnf?.jkt, dpopJkt, 'access token cnf.jkt');
  assertEq(again.refresh_token, res.refresh_token, 'refresh_token in the second refresh response');
});

// ------------------------------------ the mTLS client (self_signed_tls_client_auth)
// use_mtls_endpoint_aliases makes openid-client send PAR, token and userinfo
// requests to the mtls_endpoint_aliases; customFetch presents the client
// certificate there. The browser part runs on the main listener.

const certThumbprint = jose.base64url.encode(
  createHash('sha256').update(new X509Certificate(MTLS_CERT).raw).digest(),
);
let mtlsConfig;
let mtlsLog;
let mtlsTokens;

// The mutual-TLS aliases, or an error saying the server has no mTLS listener.
function mtlsAliases() {
  const aliases = needMetadata().mtls_endpoint_aliases;
  assert(aliases && typeof aliases === 'object',
    'the server advertises no mtls_endpoint_aliases: start it with an mTLS listener ([tls] mtls_listen)');
  for (const ep of ['token_endpoint', 'pushed_authorization_request_endpoint', 'userinfo_endpoint']) {
    assert(typeof aliases[ep] === 'string' && aliases[ep].startsWith('https://'),
      `mtls_endpoint_aliases.${ep} present (${JSON.stringify(aliases)})`);
  }
  assert(aliases.token_endpoint !== md.token_endpoint,
    `mtls_endpoint_aliases are the main endpoints (${aliases.token_endpoint}): ` +
    'the server was started without an mTLS listener ([tls] mtls_listen)');
  return aliases;
}

await check('mTLS client: discovery has mtls_endpoint_aliases on a separate listener (token, PAR, userinfo)', async (note) => {
  const aliases = mtlsAliases();
  note(`token endpoint alias ${aliases.token_endpoint}`);
});

await check('mTLS client: PAR (PKCE S256) + login at the aliases with the certificate; code with iss; code grant (self_signed_tls_client_auth)', async () => {
  const aliases = mtlsAliases();
  mtlsConfig = new client.Configuration(md, MTLS_CLIENT_ID,
    { ...CLIENT_METADATA, use_mtls_endpoint_aliases: true }, client.TlsClientAuth());
  client.enableNonRepudiationChecks(mtlsConfig);
  mtlsLog = recordRequests(mtlsConfig, mtlsFetch);

  const auth = await newAuthorization(mtlsConfig, { par: true });
  checkPushed(mtlsLog, aliases.pushed_authorization_request_endpoint, auth, MTLS_CLIENT_ID);
  const browser = new Browser();
  const callback = await authorize(browser, auth.url, { expectLogin: true });
  checkCallbackIss(callback);
  const before = mtlsLog.length;
  mtlsTokens = await redeem(mtlsConfig, callback, auth);
  assert(mtlsLog.slice(before).some((r) => r.url === aliases.token_endpoint && r.status === 200),
    `the code grant went to the token endpoint alias ${aliases.token_endpoint}`);
  assert(mtlsTokens.access_token, 'access_token present');
  assert(mtlsTokens.refresh_token, 'refresh_token present');
  checkIdToken(mtlsTokens, auth, MTLS_CLIENT_ID);
});

function needMtls() {
  assert(mtlsTokens, 'prerequisite failed: no tokens from the mTLS client\'s code grant');
  return mtlsTokens;
}

await check('mTLS client: access token bound to the certificate (cnf["x5t#S256"])', async (note) => {
  const res = needMtls();
  assertEq(res.token_type.toLowerCase(), 'bearer', 'token_type');
  const at = await verifyAccessToken(res.access_token, MTLS_CLIENT_ID);
  assertEq(at.cnf?.['x5t#S256'], certThumbprint, 'cnf["x5t#S256"] is the certificate\'s SHA-256 thumbprint');
  note(`x5t#S256 ${certThumbprint}`);
});

await check('mTLS client: userinfo at the alias with the certificate', async () => {
  const res = needMtls();
  const sub = res.claims().sub;
  const info = await client.fetchUserInfo(mtlsConfig, res.access_token, sub);
  assertEq(info.sub, sub, 'userinfo sub');
});

await check('mTLS client: refresh returns the SAME refresh token; new access token bound to the certificate', async () => {
  const res = needMtls();
  const refreshed = await client.refreshTokenGrant(mtlsConfig, res.refresh_token);
  assert(refreshed.access_token && refreshed.access_token !== res.access_token, 'a new access token');
  const at = await verifyAccessToken(refreshed.access_token, MTLS_CLIENT_ID);
  assertEq(at.cnf?.['x5t#S256'], certThumbprint, 'refreshed access token cnf["x5t#S256"]');
  assertEq(refreshed.refresh_token, res.refresh_token, 'refresh_token in the refresh response');
});

// ---------------------------------------------------------- negative probes
// Plain fetch, so nothing is corrected on the client side. Client assertions
// and DPoP proofs are built here with jose.

async function clientAssertion({ aud = ISSUER, alg = 'ES256', key = dpopClientKey.key, kid = dpopClientKey.kid } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new jose.SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg, kid })
    .setIssuer(DPOP_CLIENT_ID)
    .setSubject(DPOP_CLIENT_ID)
    .setAudience(aud)
    .setIssuedAt(now)
    .setExpirationTime(now + 60)
    .sign(key);
}

function assertionParams(assertion) {
  return {
    client_id: DPOP_CLIENT_ID,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion,
  };
}

const probeDpopKeys = await jose.generateKeyPair('ES256');
const probeDpopJwk = await jose.exportJWK(probeDpopKeys.publicKey);
async function dpopProof(htm, htu) {
  return new jose.SignJWT({ htm, htu, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: probeDpopJwk })
    .setIssuedAt()
    .sign(probeDpopKeys.privateKey);
}

// A form POST with fetch: { status, headers, json, text }.
function postForm(url, params, headers = {}) {
  return request(url, { method: 'POST', form: params, headers });
}

// `r` must be an OAuth error response with one of `statuses` and one of
// `codes`; returns the error code.
function expectError(r, statuses, codes, what) {
  const seen = `${r.status} ${r.json ? JSON.stringify(r.json) : r.text.slice(0, 300)}`;
  assert(statuses.includes(r.status), `${what}: status ${statuses.join(' or ')} expected, got ${seen}`);
  assert(codes.includes(r.json?.error), `${what}: OAuth error ${codes.join(' or ')} expected, got ${seen}`);
  return r.json.error;
}

// A pushed authorization request of the DPoP client, with a valid assertion.
function pushParams(extra) {
  return {
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    state: client.randomState(),
    nonce: client.randomNonce(),
    ...extra,
  };
}

await check('negative: pushed request without code_challenge -> 400 invalid_request', async () => {
  const r = await postForm(needMetadata().pushed_authorization_request_endpoint,
    { ...pushParams({}), ...assertionParams(await clientAssertion()) });
  expectError(r, [400], ['invalid_request'], 'PAR without code_challenge');
});

await check('negative: pushed request with code_challenge_method=plain -> 400 invalid_request', async () => {
  const r = await postForm(needMetadata().pushed_authorization_request_endpoint, {
    ...pushParams({ code_challenge: client.randomPKCECodeVerifier(), code_challenge_method: 'plain' }),
    ...assertionParams(await clientAssertion()),
  });
  expectError(r, [400], ['invalid_request'], 'PAR with code_challenge_method=plain');
});

// A code grant with a made-up code (and a valid DPoP proof): with client
// authentication accepted the server answers invalid_grant, so invalid_client
// can only come from the assertion.
async function bogusCodeGrant(assertion) {
  const tokenEndpoint = needMetadata().token_endpoint;
  return postForm(tokenEndpoint, {
    grant_type: 'authorization_code',
    code: jose.base64url.encode(crypto.getRandomValues(new Uint8Array(32))),
    redirect_uri: REDIRECT_URI,
    code_verifier: client.randomPKCECodeVerifier(),
    ...assertionParams(assertion),
  }, { dpop: await dpopProof('POST', tokenEndpoint) });
}

await check('negative: client assertion with aud = the token endpoint URL (not the issuer) -> invalid_client', async (note) => {
  const control = await bogusCodeGrant(await clientAssertion());
  expectError(control, [400], ['invalid_grant'], 'control: made-up code with a valid assertion (aud = issuer)');
  const r = await bogusCodeGrant(await clientAssertion({ aud: md.token_endpoint }));
  expectError(r, [400, 401], ['invalid_client'], 'assertion aud = token endpoint');
  note(`status ${r.status}`);
});

await check('negative: client assertion signed with RS256 (fresh RSA key, not registered; registered kid) -> invalid_client', async (note) => {
  const { privateKey } = await jose.generateKeyPair('RS256', { modulusLength: 2048 });
  const r = await bogusCodeGrant(await clientAssertion({ alg: 'RS256', key: privateKey }));
  expectError(r, [400, 401], ['invalid_client'], 'RS256 assertion');
  note(`status ${r.status}`);
});

await check('negative: /oauth2/authorize without PAR -> 400 HTML error page mentioning invalid_request, no redirect', async (note) => {
  const url = new URL(needMetadata().authorization_endpoint);
  const verifier = client.randomPKCECodeVerifier();
  url.search = new URLSearchParams({
    client_id: DPOP_CLIENT_ID,
    response_type: 'code',
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    state: client.randomState(),
    nonce: client.randomNonce(),
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  }).toString();
  const res = await fetch(url, { redirect: 'manual', headers: { accept: 'text/html' } });
  const body = await res.text();
  const seen = `${res.status}${res.headers.get('location') ? ` Location: ${res.headers.get('location')}` : ''}: ${pageSummary(body)}`;
  assertEq(res.headers.get('location'), null, `Location header (${seen})`);
  assertEq(res.status, 400, `status (${seen})`);
  assert((res.headers.get('content-type') ?? '').startsWith('text/html'),
    `content-type is text/html (got ${res.headers.get('content-type')})`);
  assert(body.includes('invalid_request'), `the page mentions invalid_request (${pageSummary(body)})`);
  note(pageSummary(body));
});

await check('negative: code exchange without a DPoP proof (DPoP app) -> 400 invalid_dpop_proof or invalid_request', async (note) => {
  assert(dpopBrowser?.cookies.has('tether_session'), 'prerequisite failed: no signed-in browser from the DPoP client\'s flow');
  // A fresh code, pushed without a DPoP proof (so the code itself is not bound
  // to a key); the browser's session answers without a login page.
  const { config, log } = dpopClient();
  const auth = await newAuthorization(config, { par: true });
  checkPushed(log, md.pushed_authorization_request_endpoint, auth, DPOP_CLIENT_ID);
  const callback = await authorize(dpopBrowser, auth.url, { expectLogin: false });
  const r = await postForm(md.token_endpoint, {
    grant_type: 'authorization_code',
    code: callback.searchParams.get('code'),
    redirect_uri: REDIRECT_URI,
    code_verifier: auth.codeVerifier,
    ...assertionParams(await clientAssertion()),
  });
  const code = expectError(r, [400], ['invalid_dpop_proof', 'invalid_request'], 'code grant without DPoP');
  note(`answered ${r.status} ${code}${r.json?.error_description ? `: ${r.json.error_description}` : ''}`);
});

// --------------------------------------------------- back-channel logout
// RP-initiated logout in the DPoP client's browser ends its session; the
// server must then POST a logout token to the DPoP app's back-channel URI.

let logoutToken;

await check('back-channel logout: RP-initiated logout (id_token_hint, client_id, session cookie) ends the session', async (note) => {
  const res = needDpop();
  assert(dpopBrowser?.cookies.has('tether_session'), 'prerequisite failed: no signed-in browser from the DPoP client\'s flow');
  const url = new URL(md.end_session_endpoint);
  url.search = new URLSearchParams({ id_token_hint: res.id_token, client_id: DPOP_CLIENT_ID }).toString();
  const out = await dpopBrowser.request(url);
  const body = await out.text();
  assert(out.status === 200 || out.status === 302 || out.status === 303,
    `logout answered ${out.status}: ${pageSummary(body)}`);
  note(`logout answered ${out.status}${out.headers.get('location') ? ` to ${out.headers.get('location')}` : `: ${pageSummary(body)}`}`);
  // The session is over: a new authorization asks for the login page again.
  const { config } = dpopClient();
  const auth = await newAuthorization(config, { par: true });
  const again = await dpopBrowser.request(auth.url);
  await again.arrayBuffer();
  assertEq(again.status, 200, 'a new authorization after logout shows the login page (status)');
});

await check('back-channel logout: one POST with logout_token to the registered URI within 10 s', async (note) => {
  assert(dpopTokens, 'prerequisite failed: no DPoP client session to log out');
  const started = Date.now();
  await waitForLogoutRequests(1, 10_000);
  assert(logoutRequests.length > 0, 'no request reached the back-channel logout URI within 10 s');
  const waited = Date.now() - started;
  await waitForLogoutRequests(2, 1_000); // a duplicate would show up here
  assertEq(logoutRequests.length, 1, 'number of requests to the back-channel logout URI');
  const [req] = logoutRequests;
  assertEq(req.method, 'POST', 'method');
  assertEq(req.url, '/backchannel', 'path');
  assert(req.contentType.split(';')[0].trim().toLowerCase() === 'application/x-www-form-urlencoded',
    `content-type application/x-www-form-urlencoded (got ${req.contentType})`);
  const form = new URLSearchParams(req.body);
  logoutToken = form.get('logout_token');
  assert(logoutToken, `logout_token in the body (${req.body.slice(0, 200)})`);
  note(`received after ${waited} ms`);
});

await check('back-channel logout: logout_token verified (JWKS, iss, aud, typ logout+jwt, ES256); events, sid, sub, jti, exp - iat <= 120, no nonce', async () => {
  assert(logoutToken, 'prerequisite failed: no logout_token received');
  const idClaims = needDpop().claims();
  const { payload, protectedHeader } = await jose.jwtVerify(logoutToken, jwks, {
    issuer: ISSUER,
    audience: DPOP_CLIENT_ID,
    typ: 'logout+jwt',
    algorithms: ['ES256'],
    requiredClaims: ['iss', 'aud', 'iat', 'exp', 'jti'],
  });
  assertEq(protectedHeader.typ, 'logout+jwt', 'typ header');
  assert(protectedHeader.kid, 'kid in the header');
  const events = payload.events;
  assert(events && typeof events === 'object' && !Array.isArray(events), `events is an object (${JSON.stringify(events)})`);
  const event = events[BACKCHANNEL_EVENT];
  assert(event && typeof event === 'object' && !Array.isArray(event),
    `events has ${BACKCHANNEL_EVENT} with a JSON object (${JSON.stringify(events)})`);
  assertEq(payload.sid, idClaims.sid, 'sid is the ID token\'s sid');
  assertEq(payload.sub, idClaims.sub, 'sub is the ID token\'s sub');
  assert(!('nonce' in payload), `no nonce claim (${JSON.stringify(payload)})`);
  assert(typeof payload.jti === 'string' && payload.jti.length > 0, 'jti present');
  assert(payload.exp - payload.iat <= 120, `exp - iat <= 120 (got ${payload.exp - payload.iat})`);
});

receiver.close();
mtlsAgent.destroy();
finish();

// Interoperability check: drives a running Tether server with panva's
// openid-client (v6) and jose, two independent, standards-focused libraries.
//
// Inputs (environment):
//   ISSUER              e.g. https://localhost:29443
//   CONF_CLIENT_ID      confidential client (client_secret_basic), grant types
//   CONF_CLIENT_SECRET    authorization_code, refresh_token, password,
//                         client_credentials; JWT access tokens; --introspect-any
//   PUBLIC_CLIENT_ID    public client (PKCE), authorization_code, refresh_token
//   REDIRECT_URI        registered for both clients (never contacted)
//   USERNAME, PASSWORD  an existing user
//   EXPECTED_AUDIENCE   optional: the `aud` the confidential client's JWT
//                       access tokens must carry (its --audience); when unset
//                       any non-empty aud is accepted
//   PKJWT_CLIENT_ID     client authenticating with private_key_jwt; grant type
//                         client_credentials, JWT access tokens, --introspect-any
//   PKJWT_PRIVATE_JWK   that client's private key: an ES256 private JWK (JSON)
//                         whose `kid` names the public key registered for it
//                         (app create --jwks)
//   CSJWT_CLIENT_ID     client authenticating with client_secret_jwt; grant type
//   CSJWT_CLIENT_SECRET   client_credentials, JWT access tokens, --introspect-any
//   PAR_CLIENT_ID       confidential client (client_secret_basic) created with
//   PAR_CLIENT_SECRET     --require-par (RFC 9126); grant types
//                         authorization_code, refresh_token; REDIRECT_URI
//                         registered; JWT access tokens
//   PKJWT_CODE_CLIENT_ID    client authenticating with private_key_jwt; grant
//   PKJWT_CODE_PRIVATE_JWK    types authorization_code, refresh_token;
//                             REDIRECT_URI registered; JWT access tokens; its
//                             private key as for PKJWT_PRIVATE_JWK (its own)
//   JAR_CLIENT_ID       confidential client (client_secret_basic); grant types
//   JAR_CLIENT_SECRET     authorization_code, refresh_token; REDIRECT_URI
//                         registered; JWT access tokens; a JWK Set registered
//                         (app create --jwks) to verify its request objects
//                         (RFC 9101)
//   JAR_PRIVATE_JWK     that client's private key, as for PKJWT_PRIVATE_JWK
//                         (its own); signs its request objects
// TLS: the server's CA must be trusted via NODE_EXTRA_CA_CERTS; verification
// is never disabled.
//
// Output: one `ok - <name>` / `not ok - <name>` line per check, then
// `N passed, M failed`; exit status 1 when anything failed.

import * as client from 'openid-client';
import * as jose from 'jose';
import {
  assert, assertEq, Browser, check, codeFlow, describe, env, finish, halfHash, pageSummary, parseJwk,
  parseLoginForm, redeem,
} from './lib.mjs';

// ---------------------------------------------------------------- inputs

const ISSUER = env('ISSUER');
const CONF_CLIENT_ID = env('CONF_CLIENT_ID');
const CONF_CLIENT_SECRET = env('CONF_CLIENT_SECRET');
const PUBLIC_CLIENT_ID = env('PUBLIC_CLIENT_ID');
const REDIRECT_URI = env('REDIRECT_URI');
const USERNAME = env('USERNAME');
const PASSWORD = env('PASSWORD');
const EXPECTED_AUDIENCE = process.env.EXPECTED_AUDIENCE || undefined;
const PKJWT_CLIENT_ID = env('PKJWT_CLIENT_ID');
const PKJWT_PRIVATE_JWK = parseJwk('PKJWT_PRIVATE_JWK');
const CSJWT_CLIENT_ID = env('CSJWT_CLIENT_ID');
const CSJWT_CLIENT_SECRET = env('CSJWT_CLIENT_SECRET');
const PAR_CLIENT_ID = env('PAR_CLIENT_ID');
const PAR_CLIENT_SECRET = env('PAR_CLIENT_SECRET');
const PKJWT_CODE_CLIENT_ID = env('PKJWT_CODE_CLIENT_ID');
const PKJWT_CODE_PRIVATE_JWK = parseJwk('PKJWT_CODE_PRIVATE_JWK');
const JAR_CLIENT_ID = env('JAR_CLIENT_ID');
const JAR_CLIENT_SECRET = env('JAR_CLIENT_SECRET');
const JAR_PRIVATE_JWK = parseJwk('JAR_PRIVATE_JWK');

const SCOPE = 'openid profile email';

// ---------------------------------------------------------------- helpers

// Expect `promise` to reject with an OAuth error response carrying `code`.
async function expectOAuthError(promise, code, what) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    if (err instanceof client.ResponseBodyError) {
      assertEq(err.error, code, `${what}: OAuth error code`);
      return err;
    }
    throw new Error(`${what}: expected OAuth error ${code}, got ${describe(err)}`);
  }
  throw new Error(`${what}: expected OAuth error ${code}, but the request succeeded: ${JSON.stringify(result)}`);
}

function checkAtHash(idToken, accessToken) {
  const { alg } = jose.decodeProtectedHeader(idToken);
  const claims = jose.decodeJwt(idToken);
  assert(typeof claims.at_hash === 'string', 'ID token has at_hash');
  assertEq(claims.at_hash, halfHash(alg, accessToken), 'at_hash value');
}

// Verifies a JWT access token (RFC 9068) with jose against the server's JWKS
// and returns its claims. By default the token must belong to the
// confidential client and carry EXPECTED_AUDIENCE; `opts.clientId` and
// `opts.audience` (undefined: any non-empty aud) check another client's token.
async function verifyAccessToken(jwks, token, opts = {}) {
  const clientId = 'clientId' in opts ? opts.clientId : CONF_CLIENT_ID;
  const expectedAudience = 'audience' in opts ? opts.audience : EXPECTED_AUDIENCE;
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    issuer: ISSUER,
    typ: 'at+jwt',
    audience: expectedAudience,
    requiredClaims: ['iss', 'exp', 'aud', 'sub', 'client_id', 'iat', 'jti'],
  });
  assertEq(protectedHeader.typ.toLowerCase(), 'at+jwt', 'typ header');
  assert(protectedHeader.kid, 'kid in header');
  assertEq(payload.iss, ISSUER, 'iss');
  assertEq(payload.client_id, clientId, 'client_id');
  const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud];
  assert(aud.length > 0 && aud.every((a) => typeof a === 'string' && a.length > 0),
    `aud is non-empty (${JSON.stringify(payload.aud)})`);
  if (expectedAudience) assert(aud.includes(expectedAudience), `aud includes ${expectedAudience}`);
  return payload;
}

// Expect `promise` to fail client authentication: HTTP 401 with the OAuth
// error invalid_client (RFC 6749 5.2). openid-client surfaces a 401 that
// carries a WWW-Authenticate challenge as WWWAuthenticateChallengeError, so
// the body is read from its response then.
async function expectInvalidClient(promise, what) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    if (err instanceof client.ResponseBodyError) {
      assertEq(err.status, 401, `${what}: status`);
      assertEq(err.error, 'invalid_client', `${what}: OAuth error code`);
      return;
    }
    if (err instanceof client.WWWAuthenticateChallengeError) {
      assertEq(err.status, 401, `${what}: status`);
      const body = await err.response.json().catch(() => undefined);
      assertEq(body?.error, 'invalid_client', `${what}: OAuth error code`);
      return;
    }
    throw new Error(`${what}: expected OAuth error invalid_client, got ${describe(err)}`);
  }
  throw new Error(`${what}: expected OAuth error invalid_client, but the request succeeded: ${JSON.stringify(result)}`);
}

// The space-separated scope string as an array ([] when absent).
function scopes(value) {
  return typeof value === 'string' ? value.split(' ').filter(Boolean) : [];
}

// Sign-in through the login form and the code flow (lib.mjs) for USERNAME.
const { authorize, newAuthorization } = codeFlow({
  issuer: ISSUER, username: USERNAME, password: PASSWORD, redirectUri: REDIRECT_URI, scope: SCOPE,
});

// ---------------------------------------------------------------- checks

let conf; // openid-client Configuration for the confidential client
let pub; // ... and for the public client
let jwks; // jose remote key set
const tokens = {}; // token endpoint responses kept for later checks

// A token response an earlier check should have stored; a check whose
// prerequisite failed fails too, with a clear message.
function need(key) {
  if (!tokens[key]) throw new Error(`prerequisite failed: no ${key} tokens from an earlier check`);
  return tokens[key];
}

await check('discovery: metadata fetched and issuer matches', async () => {
  conf = await client.discovery(
    new URL(ISSUER),
    CONF_CLIENT_ID,
    undefined,
    client.ClientSecretBasic(CONF_CLIENT_SECRET),
  );
  const md = conf.serverMetadata();
  assertEq(md.issuer, ISSUER, 'issuer');
  for (const ep of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'userinfo_endpoint',
    'introspection_endpoint', 'revocation_endpoint']) {
    assert(typeof md[ep] === 'string' && md[ep].startsWith('https://'), `metadata has ${ep}`);
  }
  assert(md.code_challenge_methods_supported?.includes('S256'), 'S256 PKCE advertised');
  assert(md.supportsPKCE('S256'), 'openid-client sees S256 PKCE support');
  // Let openid-client verify ID token signatures against the JWKS too, not
  // only claims (it does not by default for TLS-protected token responses).
  client.enableNonRepudiationChecks(conf);
  pub = new client.Configuration(md, PUBLIC_CLIENT_ID, undefined, client.None());
  client.enableNonRepudiationChecks(pub);
  jwks = jose.createRemoteJWKSet(new URL(md.jwks_uri));
});

await check('discovery: private_key_jwt and client_secret_jwt advertised (ES256, HS256)', async () => {
  const md = conf.serverMetadata();
  for (const method of ['private_key_jwt', 'client_secret_jwt']) {
    assert(md.token_endpoint_auth_methods_supported?.includes(method),
      `token_endpoint_auth_methods_supported includes ${method} ` +
      `(${JSON.stringify(md.token_endpoint_auth_methods_supported)})`);
    // Introspection and revocation authenticate clients too; when the server
    // lists their methods, the JWT methods must be there as well.
    for (const ep of ['introspection', 'revocation']) {
      const list = md[`${ep}_endpoint_auth_methods_supported`];
      if (list !== undefined) assert(list.includes(method), `${ep}_endpoint_auth_methods_supported includes ${method}`);
    }
  }
  // RFC 8414: required when private_key_jwt or client_secret_jwt is listed.
  const algs = md.token_endpoint_auth_signing_alg_values_supported;
  assert(Array.isArray(algs), 'token_endpoint_auth_signing_alg_values_supported present');
  for (const alg of ['ES256', 'HS256']) {
    assert(algs.includes(alg), `token_endpoint_auth_signing_alg_values_supported includes ${alg} (${JSON.stringify(algs)})`);
  }
  assert(!algs.includes('none'), 'token_endpoint_auth_signing_alg_values_supported does not include none');
});

await check('client_credentials: access token issued', async () => {
  const res = await client.clientCredentialsGrant(conf);
  tokens.cc = res;
  assert(typeof res.access_token === 'string' && res.access_token.length > 0, 'access_token present');
  assertEq(res.token_type.toLowerCase(), 'bearer', 'token_type');
  assert(res.expiresIn() > 0, 'expires_in > 0');
  assertEq(res.refresh_token, undefined, 'no refresh token for client_credentials (RFC 6749 4.4.3)');
});

await check('client_credentials: JWT access token verifies against JWKS (RFC 9068)', async () => {
  const payload = await verifyAccessToken(jwks, need('cc').access_token);
  assertEq(payload.sub, CONF_CLIENT_ID, 'sub of a client_credentials token is the client');
});

await check('password grant: access, refresh and ID token; ID token and JWT access token validated', async () => {
  const res = await client.genericGrantRequest(conf, 'password', {
    username: USERNAME,
    password: PASSWORD,
    scope: SCOPE,
  });
  tokens.password = res;
  assert(res.access_token, 'access_token present');
  assert(res.refresh_token, 'refresh_token present');
  assert(res.id_token, 'id_token present');
  const claims = res.claims(); // validated by openid-client (iss, aud, exp, iat, signature)
  assertEq(claims.iss, ISSUER, 'ID token iss');
  assert(claims.sub, 'ID token sub');
  checkAtHash(res.id_token, res.access_token);
  const at = await verifyAccessToken(jwks, res.access_token);
  assertEq(at.sub, claims.sub, 'access token sub is the user');
});

for (const [label, getConfig, key] of [
  ['confidential client', () => conf, 'codeConf'],
  ['public client', () => pub, 'codePub'],
]) {
  const browser = new Browser();

  await check(`authorization code + PKCE S256 + nonce + state (${label})`, async () => {
    const config = getConfig();
    const auth = await newAuthorization(config);
    const callback = await authorize(browser, auth.url, { expectLogin: true });
    assert(browser.cookies.has('tether_session'), 'tether_session cookie set after login');
    const res = await redeem(config, callback, auth);
    tokens[key] = res;
    assert(res.access_token, 'access_token present');
    assert(res.refresh_token, 'refresh_token present');
    const claims = res.claims();
    assertEq(claims.nonce, auth.nonce, 'ID token nonce');
    const clientId = config.clientMetadata().client_id;
    assert([claims.aud].flat().includes(clientId), `ID token aud includes ${clientId}`);
    assert(typeof claims.sid === 'string' && claims.sid.length > 0, 'ID token sid present');
    assert(typeof claims.auth_time === 'number', 'ID token auth_time present');
    checkAtHash(res.id_token, res.access_token);
  });

  await check(`second authorization reuses the session: no login page (${label})`, async () => {
    const config = getConfig();
    const auth = await newAuthorization(config);
    const callback = await authorize(browser, auth.url, { expectLogin: false });
    const res = await redeem(config, callback, auth);
    const claims = res.claims();
    const first = need(key).claims();
    assertEq(claims.nonce, auth.nonce, 'ID token nonce');
    assertEq(claims.sub, first.sub, 'same sub');
    assertEq(claims.sid, first.sid, 'same sid (same browser session)');
    assertEq(claims.auth_time, first.auth_time, 'same auth_time (no new authentication)');
  });
}

await check('authorization code + PKCE: code and ID token subjects agree with password grant', async () => {
  assertEq(need('codeConf').claims().sub, need('password').claims().sub, 'sub (confidential)');
  assertEq(need('codePub').claims().sub, need('password').claims().sub, 'sub (public)');
});

await check('userinfo: same sub as the ID token (confidential client)', async () => {
  const sub = need('codeConf').claims().sub;
  const info = await client.fetchUserInfo(conf, need('codeConf').access_token, sub);
  assertEq(info.sub, sub, 'userinfo sub');
  // scope included `email` and `profile`
  assert(typeof info.email === 'string' && info.email.includes('@'), `email claim present (${JSON.stringify(info)})`);
});

await check('userinfo: same sub as the ID token (public client)', async () => {
  const sub = need('codePub').claims().sub;
  const info = await client.fetchUserInfo(pub, need('codePub').access_token, sub);
  assertEq(info.sub, sub, 'userinfo sub');
});

await check('refresh (confidential client): rotation returns a new refresh token', async () => {
  const old = need('codeConf').refresh_token;
  const res = await client.refreshTokenGrant(conf, old);
  tokens.refreshed = res;
  assert(res.access_token, 'access_token present');
  assert(res.refresh_token, 'refresh_token present');
  assert(res.refresh_token !== old, 'refresh token rotated');
  if (res.id_token) assertEq(res.claims().sub, need('codeConf').claims().sub, 'refreshed ID token sub');
});

await check('refresh: reusing the old refresh token fails with invalid_grant', async () => {
  await expectOAuthError(
    client.refreshTokenGrant(conf, need('codeConf').refresh_token),
    'invalid_grant',
    'old refresh token',
  );
});

await check('refresh: after reuse the newest refresh token is revoked too (family)', async () => {
  await expectOAuthError(
    client.refreshTokenGrant(conf, need('refreshed').refresh_token),
    'invalid_grant',
    'newest refresh token',
  );
});

await check('refresh (public client): rotation without client secret', async () => {
  const old = need('codePub').refresh_token;
  const res = await client.refreshTokenGrant(pub, old);
  assert(res.refresh_token && res.refresh_token !== old, 'refresh token rotated');
});

await check('introspection: access token is active', async () => {
  const at = need('password').access_token;
  const res = await client.tokenIntrospection(conf, at);
  assertEq(res.active, true, 'active');
  assertEq(res.sub, need('password').claims().sub, 'sub');
  assertEq(res.client_id, CONF_CLIENT_ID, 'client_id');
});

await check('revocation: then introspection answers {"active":false} exactly', async () => {
  const at = need('password').access_token;
  await client.tokenRevocation(conf, at);
  const res = await client.tokenIntrospection(conf, at);
  assertEq(JSON.stringify(res), '{"active":false}', 'introspection body');
});

await check('userinfo: rejects the revoked access token', async () => {
  const at = need('password').access_token;
  let info;
  try {
    info = await client.fetchUserInfo(conf, at, client.skipSubjectCheck);
  } catch (err) {
    if (err instanceof client.WWWAuthenticateChallengeError) {
      assertEq(err.status, 401, 'status');
      assertEq(err.cause[0]?.parameters?.error, 'invalid_token', 'WWW-Authenticate error');
      return;
    }
    throw new Error(`expected a 401 invalid_token challenge, got ${describe(err)}`);
  }
  throw new Error(`userinfo answered for a revoked token: ${JSON.stringify(info)}`);
});

// ------------------------------------- JWT client authentication (RFC 7523)
// Two client_credentials clients that authenticate with a client_assertion
// built by openid-client: private_key_jwt (ES256 key, kid in the header) and
// client_secret_jwt (HS256 over the client secret). openid-client sets the
// assertion's aud to the issuer. Token, introspection and revocation
// requests all carry a fresh assertion (new jti each time).

const pkjwtKey = { key: await jose.importJWK(PKJWT_PRIVATE_JWK, 'ES256'), kid: PKJWT_PRIVATE_JWK.kid };

// An ES256 key the server has never seen, under the registered kid.
const strayKey = {
  key: (await jose.generateKeyPair('ES256')).privateKey,
  kid: PKJWT_PRIVATE_JWK.kid,
};

// Client authentication whose assertion carries `aud` instead of the issuer.
function withAud(aud) {
  return { [client.modifyAssertion]: (_header, payload) => { payload.aud = aud; } };
}

const jwtClients = [
  {
    method: 'private_key_jwt',
    clientId: PKJWT_CLIENT_ID,
    auth: (options) => client.PrivateKeyJwt(pkjwtKey, options),
    // wrong credentials: an unregistered key under the registered kid
    wrongAuth: () => client.PrivateKeyJwt(strayKey),
    wrongWhat: 'assertion signed by an unregistered key',
  },
  {
    method: 'client_secret_jwt',
    clientId: CSJWT_CLIENT_ID,
    auth: (options) => client.ClientSecretJwt(CSJWT_CLIENT_SECRET, options),
    wrongAuth: () => client.ClientSecretJwt(`${CSJWT_CLIENT_SECRET}x`),
    wrongWhat: 'assertion MACed with a wrong secret',
  },
];

for (const c of jwtClients) {
  const m = c.method;
  let config;
  let token;

  await check(`${m}: discovery with ${m} client authentication`, async () => {
    config = await client.discovery(new URL(ISSUER), c.clientId, undefined, c.auth());
    assertEq(config.serverMetadata().issuer, ISSUER, 'issuer');
  });

  await check(`${m}: client_credentials: JWT access token issued and verified`, async () => {
    assert(config, 'prerequisite failed: no configuration from discovery');
    const res = await client.clientCredentialsGrant(config, { scope: 'profile' });
    assert(typeof res.access_token === 'string' && res.access_token.length > 0, 'access_token present');
    assertEq(res.token_type.toLowerCase(), 'bearer', 'token_type');
    assert(res.expiresIn() > 0, 'expires_in > 0');
    assertEq(res.refresh_token, undefined, 'no refresh token for client_credentials');
    const payload = await verifyAccessToken(jwks, res.access_token, { clientId: c.clientId, audience: undefined });
    assertEq(payload.sub, c.clientId, 'sub of a client_credentials token is the client');
    assert(scopes(payload.scope).includes('profile'), `scope claim includes profile (${payload.scope})`);
    token = res.access_token;
  });

  await check(`${m}: introspection authenticated by ${m}: token is active`, async () => {
    assert(token, 'prerequisite failed: no access token from client_credentials');
    const res = await client.tokenIntrospection(config, token);
    assertEq(res.active, true, 'active');
    assertEq(res.client_id, c.clientId, 'client_id');
    assertEq(res.sub, c.clientId, 'sub');
  });

  await check(`${m}: revocation authenticated by ${m}, then introspection answers {"active":false}`, async () => {
    assert(token, 'prerequisite failed: no access token from client_credentials');
    await client.tokenRevocation(config, token);
    const res = await client.tokenIntrospection(config, token);
    assertEq(JSON.stringify(res), '{"active":false}', 'introspection body');
  });

  await check(`${m}: client_credentials drops openid from the requested scope`, async () => {
    assert(config, 'prerequisite failed: no configuration from discovery');
    for (const scope of ['openid', 'openid profile']) {
      const res = await client.clientCredentialsGrant(config, { scope });
      assertEq(res.id_token, undefined, `no id_token (scope "${scope}")`);
      assert(!scopes(res.scope).includes('openid'), `response scope without openid (scope "${scope}": got ${res.scope})`);
      const payload = await verifyAccessToken(jwks, res.access_token, { clientId: c.clientId, audience: undefined });
      assert(!scopes(payload.scope).includes('openid'),
        `access token scope without openid (scope "${scope}": got ${payload.scope})`);
      const info = await client.tokenIntrospection(config, res.access_token);
      assertEq(info.active, true, 'introspection active');
      assert(!scopes(info.scope).includes('openid'), `introspected scope without openid (got ${info.scope})`);
      if (scope === 'openid profile') {
        assert(scopes(res.scope).includes('profile') && scopes(payload.scope).includes('profile'),
          `profile is kept (response ${res.scope}, token ${payload.scope})`);
      }
    }
  });

  await check(`${m}: rejected with invalid_client: ${c.wrongWhat}, or an assertion for another audience`, async () => {
    assert(config, 'prerequisite failed: no configuration from discovery');
    const md = config.serverMetadata();
    const wrong = new client.Configuration(md, c.clientId, undefined, c.wrongAuth());
    await expectInvalidClient(client.clientCredentialsGrant(wrong), c.wrongWhat);
    const elsewhere = new client.Configuration(md, c.clientId, undefined, c.auth(withAud('https://elsewhere.example')));
    await expectInvalidClient(client.clientCredentialsGrant(elsewhere), 'assertion aud https://elsewhere.example');
  });
}

await check('private_key_jwt: assertion aud may be the token endpoint or the receiving endpoint', async () => {
  const md = conf.serverMetadata();
  const atToken = new client.Configuration(md, PKJWT_CLIENT_ID, undefined,
    client.PrivateKeyJwt(pkjwtKey, withAud(md.token_endpoint)));
  const res = await client.clientCredentialsGrant(atToken, { scope: 'profile' });
  assertEq((await client.tokenIntrospection(atToken, res.access_token)).active, true,
    'introspection with aud = token endpoint');
  const atIntrospection = new client.Configuration(md, PKJWT_CLIENT_ID, undefined,
    client.PrivateKeyJwt(pkjwtKey, withAud(md.introspection_endpoint)));
  assertEq((await client.tokenIntrospection(atIntrospection, res.access_token)).active, true,
    'introspection with aud = introspection endpoint');
});

await check('client_secret_jwt: the secret does not authenticate with client_secret_basic', async () => {
  const basic = new client.Configuration(conf.serverMetadata(), CSJWT_CLIENT_ID, undefined,
    client.ClientSecretBasic(CSJWT_CLIENT_SECRET));
  await expectInvalidClient(client.clientCredentialsGrant(basic), 'client_secret_basic for a client_secret_jwt client');
});

// ------------------------------- pushed authorization requests (RFC 9126)
// openid-client's buildAuthorizationUrlWithPAR posts the authorization
// request's parameters to the pushed_authorization_request_endpoint with the
// client's authentication (client_secret_basic for the --require-par app,
// private_key_jwt for the other) and builds a URL with only client_id and
// request_uri. The browser then signs in as in the plain code flow.

const pkjwtCodeKey = {
  key: await jose.importJWK(PKJWT_CODE_PRIVATE_JWK, 'ES256'),
  kid: PKJWT_CODE_PRIVATE_JWK.kid,
};

// A Configuration for a PAR client, from the metadata discovered above. The
// pushed responses are recorded in `pushed` (status and JSON body).
function parConfig(clientId, auth) {
  assert(conf, 'prerequisite failed: no configuration from discovery');
  const config = new client.Configuration(conf.serverMetadata(), clientId, undefined, auth);
  client.enableNonRepudiationChecks(config);
  const pushed = [];
  const parEndpoint = conf.serverMetadata().pushed_authorization_request_endpoint;
  config[client.customFetch] = async (url, options) => {
    const res = await fetch(url, options);
    if (String(url) === parEndpoint) {
      pushed.push({ status: res.status, body: await res.clone().json().catch(() => undefined) });
    }
    return res;
  };
  return { config, pushed };
}

await check('discovery: pushed_authorization_request_endpoint advertised (RFC 9126)', async () => {
  assert(conf, 'prerequisite failed: no configuration from discovery');
  const ep = conf.serverMetadata().pushed_authorization_request_endpoint;
  assert(typeof ep === 'string' && ep.startsWith(`${ISSUER}/`),
    `pushed_authorization_request_endpoint is under the issuer (${JSON.stringify(ep)})`);
});

const parClients = [
  {
    label: 'client_secret_basic, --require-par',
    clientId: PAR_CLIENT_ID,
    auth: () => client.ClientSecretBasic(PAR_CLIENT_SECRET),
  },
  {
    label: 'private_key_jwt',
    clientId: PKJWT_CODE_CLIENT_ID,
    auth: () => client.PrivateKeyJwt(pkjwtCodeKey),
  },
];
const parRuns = {}; // label -> { browser, url } of the completed PAR flow

for (const c of parClients) {
  await check(`PAR + PKCE S256 + nonce + state: URL has only client_id and request_uri; login; code grant (${c.label})`, async () => {
    const { config, pushed } = parConfig(c.clientId, c.auth());
    const auth = await newAuthorization(config, { par: true });
    assertEq(pushed.length, 1, 'number of pushed authorization requests');
    assertEq(pushed[0].status, 201, 'PAR response status');
    const { request_uri: requestUri, expires_in: expiresIn } = pushed[0].body ?? {};
    assert(Number.isInteger(expiresIn) && expiresIn > 0, `PAR expires_in is a positive integer (${expiresIn})`);
    const md = config.serverMetadata();
    assertEq(`${auth.url.origin}${auth.url.pathname}`, md.authorization_endpoint, 'URL is the authorization endpoint');
    assertEq([...auth.url.searchParams.keys()].sort().join(' '), 'client_id request_uri', 'URL parameters');
    assertEq(auth.url.searchParams.get('client_id'), c.clientId, 'URL client_id');
    assertEq(auth.url.searchParams.get('request_uri'), requestUri, 'URL request_uri is the pushed one');

    const browser = new Browser();
    const callback = await authorize(browser, auth.url, { expectLogin: true });
    assert(browser.cookies.has('tether_session'), 'tether_session cookie set after login');
    const res = await redeem(config, callback, auth);
    parRuns[c.label] = { browser, url: auth.url };
    assert(res.access_token, 'access_token present');
    assert(res.refresh_token, 'refresh_token present');
    const claims = res.claims(); // validated by openid-client, signature included
    assertEq(claims.iss, ISSUER, 'ID token iss');
    assertEq(claims.nonce, auth.nonce, 'ID token nonce');
    assert([claims.aud].flat().includes(c.clientId), `ID token aud includes ${c.clientId}`);
    assert(typeof claims.sid === 'string' && claims.sid.length > 0, 'ID token sid present');
    assert(typeof claims.auth_time === 'number', 'ID token auth_time present');
    checkAtHash(res.id_token, res.access_token);
    const at = await verifyAccessToken(jwks, res.access_token, { clientId: c.clientId, audience: undefined });
    assertEq(at.sub, claims.sub, 'access token sub is the user');
    assert(scopes(at.scope).includes('openid') && scopes(at.scope).includes('email'),
      `access token scope is the pushed one (${at.scope})`);
  });
}

await check('PAR: a used request_uri is refused with a 400 error page, not a redirect', async () => {
  const run = parRuns[parClients[0].label];
  assert(run, 'prerequisite failed: no completed PAR flow for the --require-par client');
  // The browser still has its session: without the request_uri check this
  // would redirect straight back with a new code.
  const res = await run.browser.request(run.url);
  const body = await res.text();
  assertEq(res.status, 400, `status (${pageSummary(body)})`);
  assertEq(res.headers.get('location'), null, 'Location header');
});

await check('PAR: reloading the login page keeps the request_uri usable until the code is issued (--require-par)', async () => {
  const { config } = parConfig(PAR_CLIENT_ID, client.ClientSecretBasic(PAR_CLIENT_SECRET));
  const auth = await newAuthorization(config, { par: true });
  const browser = new Browser();
  for (const attempt of ['first load', 'reload']) {
    const res = await browser.request(auth.url);
    const body = await res.text();
    assertEq(res.status, 200, `login page status, ${attempt} (${pageSummary(body)})`);
    parseLoginForm(body, auth.url);
  }
  const callback = await authorize(browser, auth.url, { expectLogin: true });
  const res = await redeem(config, callback, auth);
  assertEq(res.claims().nonce, auth.nonce, 'ID token nonce');
  const again = await browser.request(auth.url);
  assertEq(again.status, 400, `status after the code was issued (${pageSummary(await again.text())})`);
});

await check('PAR required: a plain authorization request is answered by a redirect with error=invalid_request', async () => {
  const { config } = parConfig(PAR_CLIENT_ID, client.ClientSecretBasic(PAR_CLIENT_SECRET));
  const auth = await newAuthorization(config);
  assert(!auth.url.searchParams.has('request_uri'), 'no request_uri in the plain URL');
  const res = await fetch(auth.url, { redirect: 'manual' });
  await res.arrayBuffer();
  assert(res.status === 302 || res.status === 303, `expected a redirect, got ${res.status}`);
  const location = res.headers.get('location');
  assert(location, 'redirect has a Location header');
  const callback = new URL(location, auth.url);
  assertEq(`${callback.origin}${callback.pathname}`, REDIRECT_URI, 'redirect target');
  assertEq(callback.searchParams.get('error'), 'invalid_request', `error (${callback.search})`);
  assertEq(callback.searchParams.get('state'), auth.state, 'state echoed');
  assert(!callback.searchParams.has('code'), 'no code');
  // openid-client reports it as an authorization error response too.
  try {
    await redeem(config, callback, auth);
  } catch (err) {
    if (err instanceof client.AuthorizationResponseError) {
      assertEq(err.error, 'invalid_request', 'openid-client: error');
      return;
    }
    throw new Error(`openid-client: expected AuthorizationResponseError, got ${describe(err)}`);
  }
  throw new Error('openid-client accepted the error redirect');
});

// ------------------------- JWT-secured authorization requests (RFC 9101)
// openid-client's buildAuthorizationUrlWithJAR puts the authorization
// request's parameters into a request object (typ oauth-authz-req+jwt; iss =
// client_id, aud = issuer, short exp) signed with the client's key (kid in the
// header) and builds a URL with only client_id and request. For JAR inside
// PAR, that URL's parameters are pushed with buildAuthorizationUrlWithPAR (as
// openid-client documents). The browser then signs in as in the plain flow.

const jarKey = { key: await jose.importJWK(JAR_PRIVATE_JWK, 'ES256'), kid: JAR_PRIVATE_JWK.kid };

// A Configuration for the JAR client (client_secret_basic at the token endpoint).
function jarConfig() {
  assert(conf, 'prerequisite failed: no configuration from discovery');
  const config = new client.Configuration(conf.serverMetadata(), JAR_CLIENT_ID, undefined,
    client.ClientSecretBasic(JAR_CLIENT_SECRET));
  client.enableNonRepudiationChecks(config);
  return config;
}

// The request object openid-client built is what the server is meant to see.
function checkRequestObject(auth, clientId, kid) {
  assert(typeof auth.request === 'string' && auth.request.split('.').length === 3,
    'openid-client built a signed request object');
  const header = jose.decodeProtectedHeader(auth.request);
  assertEq(header.alg, 'ES256', 'request object alg');
  assertEq(header.kid, kid, 'request object kid');
  const claims = jose.decodeJwt(auth.request);
  assertEq(claims.iss, clientId, 'request object iss');
  assertEq(claims.aud, ISSUER, 'request object aud');
  assertEq(claims.state, auth.state, 'request object state');
}

// Tokens from a completed code flow of `clientId`, ID token validated by
// openid-client (signature included) and checked here.
function checkCodeTokens(res, auth, clientId) {
  assert(res.access_token, 'access_token present');
  assert(res.refresh_token, 'refresh_token present');
  const claims = res.claims();
  assertEq(claims.iss, ISSUER, 'ID token iss');
  assertEq(claims.nonce, auth.nonce, 'ID token nonce');
  assert([claims.aud].flat().includes(clientId), `ID token aud includes ${clientId}`);
  assert(typeof claims.sid === 'string' && claims.sid.length > 0, 'ID token sid present');
  assert(typeof claims.auth_time === 'number', 'ID token auth_time present');
  checkAtHash(res.id_token, res.access_token);
  return claims;
}

await check('discovery: request_parameter_supported and ES256 request objects advertised (RFC 9101)', async () => {
  assert(conf, 'prerequisite failed: no configuration from discovery');
  const md = conf.serverMetadata();
  assertEq(md.request_parameter_supported, true, 'request_parameter_supported');
  const algs = md.request_object_signing_alg_values_supported;
  assert(Array.isArray(algs) && algs.includes('ES256'),
    `request_object_signing_alg_values_supported includes ES256 (${JSON.stringify(algs)})`);
  assert(!algs.includes('none'), 'request_object_signing_alg_values_supported does not include none');
});

await check('JAR + PKCE S256 + nonce + state: URL has only client_id and request; login; code grant (client_secret_basic)', async () => {
  const config = jarConfig();
  const auth = await newAuthorization(config, { jar: jarKey });
  checkRequestObject(auth, JAR_CLIENT_ID, jarKey.kid);
  const md = config.serverMetadata();
  assertEq(`${auth.url.origin}${auth.url.pathname}`, md.authorization_endpoint, 'URL is the authorization endpoint');
  assertEq([...auth.url.searchParams.keys()].sort().join(' '), 'client_id request', 'URL parameters');
  assertEq(auth.url.searchParams.get('client_id'), JAR_CLIENT_ID, 'URL client_id');

  const browser = new Browser();
  const callback = await authorize(browser, auth.url, { expectLogin: true });
  assert(browser.cookies.has('tether_session'), 'tether_session cookie set after login');
  const res = await redeem(config, callback, auth); // checks state, PKCE, nonce
  const claims = checkCodeTokens(res, auth, JAR_CLIENT_ID);
  const at = await verifyAccessToken(jwks, res.access_token, { clientId: JAR_CLIENT_ID, audience: undefined });
  assertEq(at.sub, claims.sub, 'access token sub is the user');
  assert(scopes(at.scope).includes('openid') && scopes(at.scope).includes('email'),
    `access token scope is the one in the request object (${at.scope})`);
});

await check('JAR inside PAR: request object pushed; URL has only client_id and request_uri; login; code grant (private_key_jwt)', async () => {
  const { config, pushed } = parConfig(PKJWT_CODE_CLIENT_ID, client.PrivateKeyJwt(pkjwtCodeKey));
  const auth = await newAuthorization(config, { jar: pkjwtCodeKey, par: true });
  checkRequestObject(auth, PKJWT_CODE_CLIENT_ID, pkjwtCodeKey.kid);
  assertEq(pushed.length, 1, 'number of pushed authorization requests');
  assertEq(pushed[0].status, 201, `PAR response status (${JSON.stringify(pushed[0].body)})`);
  assertEq([...auth.url.searchParams.keys()].sort().join(' '), 'client_id request_uri', 'URL parameters');
  assertEq(auth.url.searchParams.get('request_uri'), pushed[0].body?.request_uri, 'URL request_uri is the pushed one');

  const browser = new Browser();
  const callback = await authorize(browser, auth.url, { expectLogin: true });
  const res = await redeem(config, callback, auth);
  const claims = checkCodeTokens(res, auth, PKJWT_CODE_CLIENT_ID);
  const at = await verifyAccessToken(jwks, res.access_token, { clientId: PKJWT_CODE_CLIENT_ID, audience: undefined });
  assertEq(at.sub, claims.sub, 'access token sub is the user');
});

await check('JAR: a request object signed by an unregistered key is refused with a 400 error page (invalid_request_object)', async () => {
  const config = jarConfig();
  // An ES256 key the server has never seen, under the registered kid.
  const stray = { key: (await jose.generateKeyPair('ES256')).privateKey, kid: jarKey.kid };
  const auth = await newAuthorization(config, { jar: stray });
  const res = await fetch(auth.url, { redirect: 'manual' });
  const body = await res.text();
  assertEq(res.status, 400, `status (${pageSummary(body)})`);
  assertEq(res.headers.get('location'), null, 'Location header');
  assert(body.includes('invalid_request_object'), `body mentions invalid_request_object (${pageSummary(body)})`);
});

finish();

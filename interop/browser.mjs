// End-to-end check of Tether's browser pages and browser token bindings
// (token-binding.md B-1..B-8, interface.md §2) in a real headless Chromium,
// driven by playwright-core (no browser download: the Chromium named in the
// config is used).
//
// Usage: node interop/browser.mjs CONFIG.json
//
// CONFIG.json:
//   {"base": "https://localhost:PORT",        the issuer
//    "ca_file": "/path/ca.pem",                the test CA that signed the server certificate
//    "chromium": "/usr/bin/chromium",
//    "shots": "/dir/for/screenshots",
//    "user": {"username": "alice", "password": "pw"},
//    "apps": {
//      "cookie":  {client_id, client_secret, redirect_uri}   --binding cookie --token-type jwt --revoke-on-logout
//      "sso":     {client_id, client_secret, redirect_uri}   --binding sso-session --token-type opaque
//      "consent": {client_id, client_secret, redirect_uri}   --require-consent
//      "device":  {client_id}                                --public --grant-types device_code,refresh_token
//                                                            --binding device-flow}}
// The redirect_uris share one origin (https://rp.example), a host that does not exist:
// the browser's requests to it are intercepted and answered with a tiny page.
//
// TLS: nothing turns certificate verification off. Node's requests trust
// ca_file; Chromium is told to accept exactly the server key that Node
// verified against ca_file (--ignore-certificate-errors-spki-list), so the
// origin stays a secure context and Secure cookies behave as in production.
//
// Output: exactly one JSON line on stdout, {"ok":true,"facts":{...}} with exit
// status 0, or {"ok":false,"error":"step \"NAME\" failed: ...","facts":{...}}
// (the facts gathered so far) with exit status 1.
// Progress goes to stderr.

import { createHash } from 'node:crypto';
import { readFileSync, mkdirSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  assert,
  assertEq,
  configure,
  fillAndSubmitLogin,
  goto,
  log,
  loginForm,
  main,
  navigate,
  notePage,
  seen,
  step,
  watchPage,
  withTimeout,
} from './pages-lib.mjs';
import * as jose from 'jose';

const STEP_TIMEOUT = 15_000; // ms, per browser action / HTTP request
const OVERALL_TIMEOUT = 200_000; // ms, the whole run (below the 240 s the Rust test allows)
configure({ tag: 'browser.mjs', stepTimeout: STEP_TIMEOUT });

// ---------------------------------------------------------------- output

// ---------------------------------------------------------------- config

function loadConfig() {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node browser.mjs CONFIG.json');
  const cfg = JSON.parse(readFileSync(file, 'utf8'));
  for (const k of ['base', 'ca_file', 'chromium', 'shots', 'user', 'apps']) {
    if (!cfg[k]) throw new Error(`config: missing ${k}`);
  }
  for (const a of ['cookie', 'sso', 'consent']) {
    for (const k of ['client_id', 'client_secret', 'redirect_uri']) {
      if (!cfg.apps[a]?.[k]) throw new Error(`config: missing apps.${a}.${k}`);
    }
  }
  if (!cfg.apps.device?.client_id) throw new Error('config: missing apps.device.client_id');
  const origins = new Set(['cookie', 'sso', 'consent'].map((a) => new URL(cfg.apps[a].redirect_uri).origin));
  if (origins.size !== 1) throw new Error(`config: the redirect_uris must share one origin, got ${[...origins]}`);
  cfg.base = cfg.base.replace(/\/+$/, '');
  return cfg;
}

// ---------------------------------------------------------------- helpers

const md5hex = (s) => createHash('md5').update(s, 'utf8').digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function jwtPayload(token, what) {
  const parts = String(token).split('.');
  assert(parts.length === 3, `${what} is not a JWT (${parts.length} parts): ${String(token).slice(0, 40)}...`);
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

// ------------------------------------------------- server-to-server HTTP

class Http {
  constructor(base, ca) {
    this.base = base;
    this.ca = ca;
    this.agent = new https.Agent({ ca, keepAlive: false });
  }

  // POST a form; returns {status, headers, json, text}.
  post(pathname, form, { basic } = {}) {
    const url = new URL(pathname, this.base);
    const body = new URLSearchParams(form).toString();
    const headers = {
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': Buffer.byteLength(body),
      accept: 'application/json',
    };
    if (basic) {
      // RFC 6749 §2.3.1: form-urlencode id and secret before base64.
      const enc = (s) => encodeURIComponent(s).replace(/%20/g, '+');
      headers.authorization = `Basic ${Buffer.from(`${enc(basic[0])}:${enc(basic[1])}`).toString('base64')}`;
    }
    const req = new Promise((resolve, reject) => {
      const r = https.request(
        url,
        { method: 'POST', headers, agent: this.agent, autoSelectFamily: true },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode, headers: res.headers, text, json });
          });
          res.on('error', reject);
        },
      );
      r.on('error', reject);
      r.end(body);
    });
    return withTimeout(req, STEP_TIMEOUT, `POST ${url.pathname}`);
  }

  get(pathname) {
    const url = new URL(pathname, this.base);
    const req = new Promise((resolve, reject) => {
      https
        .get(url, { agent: this.agent, autoSelectFamily: true }, (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode, text, json });
          });
          res.on('error', reject);
        })
        .on('error', reject);
    });
    return withTimeout(req, STEP_TIMEOUT, `GET ${url.pathname}`);
  }

  // The server's public key (SPKI, SHA-256, base64), read from a connection
  // that verified the server certificate against the CA.
  spkiHash() {
    const url = new URL(this.base);
    const conn = new Promise((resolve, reject) => {
      const sock = tls.connect(
        {
          host: url.hostname,
          port: Number(url.port || 443),
          servername: url.hostname,
          ca: this.ca,
          autoSelectFamily: true,
        },
        () => {
          try {
            const cert = sock.getPeerX509Certificate();
            const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
            resolve(createHash('sha256').update(spki).digest('base64'));
          } catch (e) {
            reject(e);
          } finally {
            sock.end();
          }
        },
      );
      sock.on('error', reject);
    });
    return withTimeout(conn, STEP_TIMEOUT, 'TLS connection to read the server key');
  }
}

function describeResponse(r) {
  return `HTTP ${r.status} ${r.text.length > 400 ? `${r.text.slice(0, 400)}...` : r.text}`;
}

// ---------------------------------------------------------------- browser helpers

function isRp(page, rpOrigin) {
  return page.url().startsWith(`${rpOrigin}/`);
}

// The callback the browser landed on (the intercepted redirect_uri).
const rpCallbacks = new WeakMap(); // page -> URLs of the relying party's pages it loaded
async function callbackParams(page, rpOrigin, what) {
  if (!isRp(page, rpOrigin)) throw new Error(`${what}: expected a redirect to ${rpOrigin}, but ${await seen(page)}`);
  const url = page.url();
  assert(rpCallbacks.get(page)?.includes(url), `${what}: ${url} was not answered by the interception`);
  return new URL(url).searchParams;
}

async function clickApprove(page, value, what) {
  const sel = `form button[name="approve"][value="${value}"]`;
  const n = await page.locator(sel).count();
  if (n !== 1) throw new Error(`${what}: expected one button approve=${value}, found ${n} ${await seen(page)}`);
  return navigate(page, () => page.click(sel), `${what}: clicking approve=${value}`);
}

async function shot(page, dir, name, facts) {
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: STEP_TIMEOUT });
  (facts.screenshots ??= []).push(file);
}

function authorizeUrl(base, app, state, nonce, scope = 'openid profile') {
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: app.client_id,
    redirect_uri: app.redirect_uri,
    scope,
    state,
    nonce,
  });
  return `${base}/oauth2/authorize?${q.toString().replace(/\+/g, '%20')}`;
}

// ---------------------------------------------------------------- the run

async function run(cfg, facts) {
  const ca = readFileSync(cfg.ca_file);
  const http = new Http(cfg.base, ca);
  const { base } = cfg;
  const baseOrigin = new URL(base).origin;
  const { cookie: cookieApp, sso: ssoApp, consent: consentApp, device: deviceApp } = cfg.apps;
  const rpOrigin = new URL(cookieApp.redirect_uri).origin;
  const { username, password } = cfg.user;
  mkdirSync(cfg.shots, { recursive: true });

  const introspect = async (app, token, what) => {
    const r = await http.post('/oauth2/introspect', { token }, { basic: [app.client_id, app.client_secret] });
    if (r.status !== 200 || !r.json) throw new Error(`${what}: introspection answered ${describeResponse(r)}`);
    return r.json;
  };
  const redeem = async (app, code, what) => {
    const r = await http.post(
      '/oauth2/token',
      { grant_type: 'authorization_code', code, redirect_uri: app.redirect_uri },
      { basic: [app.client_id, app.client_secret] },
    );
    if (r.status !== 200 || !r.json?.access_token) throw new Error(`${what}: token endpoint answered ${describeResponse(r)}`);
    return r.json;
  };

  const jwks = await step('fetch the JWKS', async () => {
    const r = await http.get('/oauth2/jwks');
    if (r.status !== 200 || !r.json?.keys) throw new Error(`GET /oauth2/jwks answered ${describeResponse(r)}`);
    return jose.createLocalJWKSet(r.json);
  });
  const verifyJwt = async (token, what, opts = {}) => {
    try {
      // `now` (Unix seconds) in the config: the server under test runs on an injected clock.
      const clock = cfg.now ? { currentDate: new Date(cfg.now * 1000) } : {};
      const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, { issuer: base, ...clock, ...opts });
      return { payload, header: protectedHeader };
    } catch (e) {
      throw new Error(`${what}: JWT does not verify against the JWKS: ${e.code ?? ''} ${e.message}`);
    }
  };

  // TLS for Chromium: accept the key Node verified against the CA, nothing else.
  const spki = await step('read the server key through a CA-verified TLS connection', () => http.spkiHash());
  facts.tls = { chromium_trust: 'ignore-certificate-errors-spki-list', server_spki_sha256: spki };

  // Playwright gives each launch a fresh profile (--user-data-dir) under
  // os.tmpdir() and removes it on close; every scenario that needs "another
  // browser" uses a new context, which shares no cookies with the others.
  const browser = await step('launch Chromium', () =>
    chromium.launch({
      executablePath: cfg.chromium,
      headless: true,
      timeout: 30_000,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--ignore-certificate-errors-spki-list=${spki}`,
        // The relying party's host never resolves: its requests are answered
        // in the browser (see newContext).
        `--host-resolver-rules=MAP ${new URL(rpOrigin).hostname} ~NOTFOUND`,
      ],
    }),
  );
  try {
    facts.chromium_version = browser.version();
    await scenarios({ cfg, facts, browser, http, base, baseOrigin, rpOrigin, cookieApp, ssoApp, consentApp,
      deviceApp, username, password, introspect, redeem, verifyJwt });
  } finally {
    await withTimeout(browser.close(), 10_000, 'closing Chromium').catch((e) => log(e.message));
  }
}

// A fresh browser profile (a "browser" in the scenarios) with one page.
//
// The redirect_uri host does not exist. Playwright's own routing
// (context.route) does not see requests reached through a redirect, and every
// callback here is reached through a 302/303 from Tether, so requests to the
// relying party are intercepted with the DevTools Fetch domain on the page's
// own CDP session: each one (redirect hops included) is answered with a tiny
// page and its URL recorded. Chromium is also told that the host does not
// resolve, so nothing ever leaves the machine for it.
async function newContext(browser, rpOrigin, label) {
  const context = await browser.newContext({ viewport: { width: 800, height: 700 } });
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  const page = await context.newPage();
  watchPage(page);
  const callbacks = [];
  rpCallbacks.set(page, callbacks);
  const cdp = await context.newCDPSession(page);
  cdp.on('Fetch.requestPaused', (ev) => {
    let reply;
    if (ev.request.url.startsWith(`${rpOrigin}/`)) {
      const doc = ev.resourceType === 'Document';
      if (doc) callbacks.push(ev.request.url);
      reply = cdp.send('Fetch.fulfillRequest', {
        requestId: ev.requestId,
        responseCode: doc ? 200 : 404, // 404: the favicon
        responseHeaders: [{ name: 'content-type', value: 'text/html; charset=utf-8' }],
        body: Buffer.from(doc ? '<!doctype html><title>RP</title><p id="rp">relying party callback</p>' : '')
          .toString('base64'),
      });
    } else {
      reply = cdp.send('Fetch.continueRequest', { requestId: ev.requestId });
    }
    reply.catch((e) => notePage(page, `interception of ${ev.request.url} failed: ${e.message}`));
  });
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern: `${rpOrigin}/*`, requestStage: 'Request' }] });
  return { context, page, callbacks, label };
}

async function scenarios(x) {
  const { cfg, facts, browser, http, base, baseOrigin, rpOrigin, cookieApp, ssoApp, consentApp, deviceApp,
    username, password, introspect, redeem, verifyJwt } = x;
  const one = await newContext(browser, rpOrigin, 'browser one');
  const p1 = one.page;

  // ------------------------------------------------------------ 1. login page
  await step('1. login page: wrong password, then the right one', async () => {
    const resp = await goto(p1, authorizeUrl(base, cookieApp, 'S1', 'N1'), 'opening the authorization URL');
    assert(p1.url().startsWith(`${baseOrigin}/oauth2/authorize`), `expected the login page, but ${await seen(p1)}`);
    assertEq(resp?.status(), 200, 'login page HTTP status');
    await loginForm(p1, 'login page');
    await shot(p1, cfg.shots, '01-login', facts);

    const bad = await fillAndSubmitLogin(p1, username, `${password}-wrong`, 'wrong password');
    assert(!isRp(p1, rpOrigin), `a wrong password was accepted: ${await seen(p1)}`);
    const errCount = await p1.locator('#login-error').count();
    if (errCount !== 1) throw new Error(`wrong password: no #login-error element ${await seen(p1)}`);
    const errText = (await p1.locator('#login-error').innerText()).trim();
    assert(/wrong username or password/i.test(errText), `#login-error does not mention a wrong username or password: "${errText}"`);
    await loginForm(p1, 'login page after a wrong password');
    await shot(p1, cfg.shots, '02-login-error', facts);
    facts.login_error = { status: bad?.status(), text: errText };

    await fillAndSubmitLogin(p1, username, password, 'right password');
    const q = await callbackParams(p1, rpOrigin, 'after signing in');
    assert(q.get('code'), `no code in the callback ${p1.url()}`);
    assertEq(q.get('state'), 'S1', 'callback state');
    facts.callback_iss = q.get('iss');
    one.code1 = q.get('code');
  });

  // ------------------------------------------------------------ 2. cookies
  const atbv1 = await step('2. cookies held by the browser', async () => {
    const jar = await one.context.cookies(base);
    const atbv = jar.find((c) => c.name === 'atbv');
    const sess = jar.find((c) => c.name === 'tether_session');
    assert(atbv, `no atbv cookie; the browser holds: ${JSON.stringify(jar.map((c) => c.name))}`);
    assert(sess, `no tether_session cookie; the browser holds: ${JSON.stringify(jar.map((c) => c.name))}`);
    const flags = (c) => ({ domain: c.domain, path: c.path, secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite, expires: c.expires });
    facts.atbv = { value: atbv.value, ...flags(atbv) };
    facts.session_cookie = flags(sess);
    assert(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(atbv.value), `atbv is not a UUID v4: ${atbv.value}`);
    assertEq(atbv.secure, true, 'atbv secure');
    assertEq(atbv.httpOnly, true, 'atbv httpOnly');
    assertEq(atbv.path, '/', 'atbv path');
    assertEq(atbv.sameSite, 'None', 'atbv sameSite');
    assertEq(atbv.expires, -1, 'atbv expires (session cookie)');
    assertEq(atbv.domain, new URL(base).hostname, 'atbv domain (host-only, no leading dot)');
    assertEq(sess.httpOnly, true, 'tether_session httpOnly');
    assertEq(sess.secure, true, 'tether_session secure');
    assertEq(sess.sameSite, 'Lax', 'tether_session sameSite');
    return atbv.value;
  });

  // ------------------------------------------------------------ 3. redeem
  const tok1 = await step('3. redeem the code: a cookie-bound JWT and an ID token', async () => {
    const t = await redeem(cookieApp, one.code1, 'authorization_code grant');
    const { payload: at, header } = await verifyJwt(t.access_token, 'access token', { typ: 'at+jwt' });
    assertEq(header.typ?.toLowerCase(), 'at+jwt', 'access token typ');
    assertEq(at.binding_type, 'cookie', 'access token binding_type');
    assertEq(at.binding_ref, md5hex(atbv1), 'access token binding_ref (md5 of atbv)');
    assert(at.cnf === undefined, `a cookie-bound token carries no cnf, got ${JSON.stringify(at.cnf)}`);
    assert(t.id_token, `no id_token in the token response: ${JSON.stringify(Object.keys(t))}`);
    const { payload: id } = await verifyJwt(t.id_token, 'id_token', { audience: cookieApp.client_id });
    assert(typeof id.sid === 'string' && id.sid, `id_token has no sid: ${JSON.stringify(id)}`);
    assert(typeof id.isk === 'string' && id.isk, `id_token has no isk: ${JSON.stringify(id)}`);
    assertEq(id.nonce, 'N1', 'id_token nonce');
    assert(!('binding_type' in t) && !('binding_ref' in t), 'the token response says nothing about binding (B-4)');
    const intro = await introspect(cookieApp, t.access_token, 'fresh JWT');
    assertEq(intro.active, true, 'fresh JWT active');
    assertEq(intro.binding_type, 'cookie', 'introspection binding_type');
    assertEq(intro.binding_ref, at.binding_ref, 'introspection binding_ref');
    facts.binding_ref_1 = at.binding_ref;
    facts.binding_ref_is_md5_of_atbv = true;
    facts.id_token_sid = id.sid;
    facts.id_token_isk = id.isk;
    return { ...t, claims: at, id };
  });

  // ------------------------------------------------------------ 4. SSO, same browser
  const tok2 = await step('4. authorize again in the same browser: SSO, same atbv, previous JWT revoked', async () => {
    await goto(p1, authorizeUrl(base, cookieApp, 'S2', 'N2'), 'authorizing again');
    const q = await callbackParams(p1, rpOrigin, 'authorizing with a live session (no login page expected)');
    assertEq(q.get('state'), 'S2', 'callback state');
    assert(q.get('code'), `no code in ${p1.url()}`);
    const jar = await one.context.cookies(base);
    const atbv = jar.find((c) => c.name === 'atbv')?.value;
    assertEq(atbv, atbv1, 'atbv after a second authorization');
    const t = await redeem(cookieApp, q.get('code'), 'second authorization_code grant');
    const { payload: at } = await verifyJwt(t.access_token, 'second access token', { typ: 'at+jwt' });
    assertEq(at.binding_ref, tok1.claims.binding_ref, 'binding_ref of the second JWT');
    assert(t.access_token !== tok1.access_token, 'a JWT app issues a new JWT');
    const old = await introspect(cookieApp, tok1.access_token, 'previous JWT');
    assertEq(JSON.stringify(old), '{"active":false}', 'previous JWT introspection (one active JWT per reuse key, B-3)');
    const cur = await introspect(cookieApp, t.access_token, 'new JWT');
    assertEq(cur.active, true, 'new JWT active');
    if (tok1.refresh_token) {
      const r = await http.post('/oauth2/token', { grant_type: 'refresh_token', refresh_token: tok1.refresh_token },
        { basic: [cookieApp.client_id, cookieApp.client_secret] });
      assertEq(r.status, 400, `refresh token of the revoked JWT (B-3: revoked together) — ${describeResponse(r)}; status`);
      facts.revoked_jwt_refresh_error = r.json?.error;
    }
    facts.atbv_unchanged_after_sso = true;
    facts.binding_ref_same_after_sso = true;
    facts.previous_jwt_inactive = true;
    return { ...t, claims: at };
  });

  // ------------------------------------------------------------ 5. another browser
  const two = await newContext(browser, rpOrigin, 'browser two');
  const tokTwo = await step('5. a second browser: its own atbv and binding_ref', async () => {
    const p = two.page;
    await goto(p, authorizeUrl(base, cookieApp, 'S5', 'N5'), 'opening the authorization URL');
    await fillAndSubmitLogin(p, username, password, 'second browser sign-in');
    const q = await callbackParams(p, rpOrigin, 'second browser after signing in');
    assertEq(q.get('state'), 'S5', 'callback state');
    const atbv = (await two.context.cookies(base)).find((c) => c.name === 'atbv')?.value;
    assert(atbv, 'the second browser got no atbv cookie');
    assert(atbv !== atbv1, 'the second browser got the same atbv as the first');
    const t = await redeem(cookieApp, q.get('code'), 'second browser grant');
    const { payload: at } = await verifyJwt(t.access_token, 'second browser access token', { typ: 'at+jwt' });
    assertEq(at.binding_ref, md5hex(atbv), 'second browser binding_ref (md5 of its atbv)');
    assert(at.binding_ref !== tok2.claims.binding_ref, 'the two browsers share a binding_ref');
    // A different BR is a different reuse key: the first browser's token lives on.
    const first = await introspect(cookieApp, tok2.access_token, 'first browser JWT');
    assertEq(first.active, true, "first browser's JWT still active after the second browser's login");
    facts.binding_ref_2 = at.binding_ref;
    facts.atbv_differs_between_browsers = true;
    facts.binding_ref_differs_between_browsers = true;
    return t;
  });

  // ------------------------------------------------------------ 6. sso-session app
  const t1 = await step('6. sso-session app: SSO, opaque token reused in the same session', async () => {
    const get = async (state) => {
      await goto(p1, authorizeUrl(base, ssoApp, state, `n-${state}`), `authorizing the SSO app (${state})`);
      const q = await callbackParams(p1, rpOrigin, `SSO app ${state} (no login page expected)`);
      assertEq(q.get('state'), state, 'callback state');
      return redeem(ssoApp, q.get('code'), `SSO app grant ${state}`);
    };
    const a = await get('S6a');
    assert(a.access_token.split('.').length !== 3, `the opaque app issued a JWT: ${a.access_token.slice(0, 30)}...`);
    const b = await get('S6b');
    assertEq(b.access_token, a.access_token, 'second access token of the same session (B-3 opaque reuse)');
    assert(b.expires_in <= a.expires_in, `reused token expires_in grew: ${a.expires_in} -> ${b.expires_in}`);
    if (a.refresh_token && b.refresh_token) {
      assert(a.refresh_token !== b.refresh_token, 'the reused access token came with the same refresh token (B-3: a fresh one)');
    }
    const intro = await introspect(ssoApp, a.access_token, 'sso-session token');
    assertEq(intro.active, true, 'sso-session token active');
    assertEq(intro.binding_type, 'sso-session', 'introspection binding_type');
    assert(/^[0-9a-f]{32}$/.test(intro.binding_ref ?? ''), `binding_ref is not 32 hex: ${intro.binding_ref}`);
    // B-1: the BV is the login session's key, which the ID token's isk carries.
    assert(a.id_token, 'SSO app: no id_token for scope openid');
    const isk = jwtPayload(a.id_token, 'SSO app id_token').isk;
    assertEq(isk, tok1.id.isk, "SSO app id_token isk (same login session as the cookie app's)");
    assertEq(intro.binding_ref, md5hex(isk), 'sso-session binding_ref (md5 of the session key, carried by isk)');
    facts.sso = {
      token_reused: true,
      refresh_token_fresh: a.refresh_token !== b.refresh_token,
      binding_ref: intro.binding_ref,
      binding_ref_is_md5_of_isk: true,
      isk_same_as_cookie_app: true,
    };
    return a.access_token;
  });

  // ------------------------------------------------------------ 7. consent
  await step('7. consent page: Allow gives a code, Deny gives access_denied', async () => {
    await goto(p1, authorizeUrl(base, consentApp, 'S7a', 'N7a'), 'authorizing the consent app');
    assert(!isRp(p1, rpOrigin), `no consent page: redirected straight to ${p1.url()}`);
    await shot(p1, cfg.shots, '03-consent', facts);
    const yes = await p1.locator('form button[name="approve"][value="yes"]').count();
    const no = await p1.locator('form button[name="approve"][value="no"]').count();
    if (yes !== 1 || no !== 1) throw new Error(`consent page: expected approve=yes and approve=no buttons ${await seen(p1)}`);
    await clickApprove(p1, 'yes', 'consent');
    let q = await callbackParams(p1, rpOrigin, 'after Allow');
    assert(q.get('code'), `Allow: no code in ${p1.url()}`);
    assertEq(q.get('state'), 'S7a', 'Allow: state');
    const t = await redeem(consentApp, q.get('code'), 'consent app grant');
    assert(t.access_token, 'consent app: no access token');

    await goto(p1, authorizeUrl(base, consentApp, 'S7b', 'N7b'), 'authorizing the consent app again');
    assert(!isRp(p1, rpOrigin), `second consent: redirected straight to ${p1.url()}`);
    await clickApprove(p1, 'no', 'consent');
    q = await callbackParams(p1, rpOrigin, 'after Deny');
    assertEq(q.get('error'), 'access_denied', 'Deny: error');
    assertEq(q.get('state'), 'S7b', 'Deny: state');
    assert(!q.get('code'), 'Deny: a code was issued');
    facts.consent = { allow_gave_code: true, deny_error: q.get('error'), deny_iss: q.get('iss') };
  });

  // ------------------------------------------------------------ 8. logout
  await step('8. logout without id_token_hint: confirmation page, then revocation', async () => {
    const q0 = new URLSearchParams({ client_id: cookieApp.client_id, post_logout_redirect_uri: cookieApp.redirect_uri, state: 'L1' });
    await goto(p1, `${base}/oidc/logout?${q0}`, 'opening the logout URL');
    assert(!isRp(p1, rpOrigin), `logout without id_token_hint redirected at once (no confirmation): ${p1.url()}`);
    await shot(p1, cfg.shots, '04-logout', facts);
    const btn = p1.locator('form button[name="approve"][value="yes"]');
    if ((await btn.count()) !== 1) throw new Error(`logout page: no Sign out button (approve=yes) ${await seen(p1)}`);
    const label = (await btn.innerText()).trim();
    assert(/sign out/i.test(label), `logout button says "${label}", not "Sign out"`);
    // Still signed in until confirmed: the sso-session token is alive.
    const before = await introspect(ssoApp, t1, 'sso-session token before confirming');
    assertEq(before.active, true, 'sso-session token active before the logout is confirmed');
    await clickApprove(p1, 'yes', 'logout');
    const q = await callbackParams(p1, rpOrigin, 'after Sign out');
    assertEq(q.get('state'), 'L1', 'post-logout state');

    const sso = await introspect(ssoApp, t1, 'sso-session token after logout');
    assertEq(JSON.stringify(sso), '{"active":false}', 'sso-session token after logout');
    const jwt = await introspect(cookieApp, tok2.access_token, 'cookie-app JWT after logout');
    assertEq(JSON.stringify(jwt), '{"active":false}', "first browser's cookie-bound JWT (revoke-on-logout) after logout");
    const other = await introspect(cookieApp, tokTwo.access_token, "second browser's JWT");
    assertEq(other.active, true, "second browser's cookie-app JWT after the first browser's logout (another session)");

    const jar = await one.context.cookies(base);
    const atbv = jar.find((c) => c.name === 'atbv');
    assert(atbv, 'atbv cookie gone after logout (B-7: logout does not clear it)');
    assertEq(atbv.value, atbv1, 'atbv value after logout');
    facts.logout = {
      confirmation_page: true,
      sso_token_after: sso,
      cookie_jwt_after: jwt,
      other_browser_token_active: other.active,
      atbv_kept: true,
      session_cookie_kept: jar.some((c) => c.name === 'tether_session'),
    };

    await goto(p1, authorizeUrl(base, cookieApp, 'S8', 'N8'), 'authorizing after logout');
    assert(!isRp(p1, rpOrigin), `authorizing after logout did not ask to sign in: ${p1.url()}`);
    await loginForm(p1, 'login page after logout');
    facts.logout.login_required_after = true;
  });

  // ------------------------------------------------------------ 9. device flow
  await step('9. device flow: pending, browser approval, tokens once', async () => {
    const da = await http.post('/oauth2/device_authorize', { client_id: deviceApp.client_id, scope: 'openid profile' });
    if (da.status !== 200 || !da.json) throw new Error(`device_authorize answered ${describeResponse(da)}`);
    const d = da.json;
    for (const k of ['device_code', 'user_code', 'verification_uri', 'verification_uri_complete', 'expires_in', 'interval']) {
      assert(d[k] !== undefined, `device_authorize response has no ${k}: ${JSON.stringify(d)}`);
    }
    assert(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/.test(d.user_code), `user_code format: ${d.user_code}`);
    assertEq(d.verification_uri, `${base}/oauth2/device`, 'verification_uri');
    const interval = Number(d.interval);
    let lastPoll = 0;
    const poll = async (what) => {
      // Respect the interval (RFC 8628 §3.5), or the answer would be slow_down.
      const wait = lastPoll + interval * 1000 + 250 - Date.now();
      if (lastPoll && wait > 0) await sleep(wait);
      lastPoll = Date.now();
      return http.post('/oauth2/token', {
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: d.device_code,
        client_id: deviceApp.client_id,
      }).then((r) => {
        log(`${what}: HTTP ${r.status} ${r.json?.error ?? ''}`);
        return r;
      });
    };
    const pending = await poll('first poll');
    assertEq(pending.status, 400, `first poll (${describeResponse(pending)}) status`);
    assertEq(pending.json?.error, 'authorization_pending', 'first poll error');

    const three = await newContext(browser, rpOrigin, 'browser three');
    try {
      const p = three.page;
      await goto(p, d.verification_uri_complete, 'opening verification_uri_complete');
      await loginForm(p, 'device sign-in page');
      const text = await p.locator('body').innerText();
      assert(text.includes(d.user_code), `the device sign-in page does not mention the code ${d.user_code} ${await seen(p)}`);
      await shot(p, cfg.shots, '05-device-login', facts);
      await fillAndSubmitLogin(p, username, password, 'device sign-in');
      if ((await p.locator('#shown-code').count()) !== 1) throw new Error(`no approval page with #shown-code ${await seen(p)}`);
      assertEq((await p.locator('#shown-code').innerText()).trim(), d.user_code, 'code shown on the approval page');
      await shot(p, cfg.shots, '06-device-approve', facts);
      await clickApprove(p, 'yes', 'device approval');
      const done = (await p.locator('body').innerText()).replace(/\s+/g, ' ');
      assert(/connected/i.test(done), `after Allow the page does not say the device is connected ${await seen(p)}`);
      facts.device_done_page = done.trim().slice(0, 200);
    } finally {
      await three.context.close();
    }

    const ok = await poll('poll after approval');
    if (ok.status !== 200 || !ok.json?.access_token) throw new Error(`poll after approval answered ${describeResponse(ok)}`);
    assert(ok.json.access_token.split('.').length !== 3, 'the device app (opaque) issued a JWT');
    assert(ok.json.refresh_token, `no refresh_token after approval: ${JSON.stringify(Object.keys(ok.json))}`);
    assertEq(String(ok.json.token_type).toLowerCase(), 'bearer', 'token_type');
    const again = await poll('second poll after approval');
    assertEq(again.status, 400, `second poll with a used device_code (${describeResponse(again)}) status`);
    assertEq(again.json?.error, 'invalid_grant', 'second poll error');
    facts.device = {
      user_code: d.user_code,
      interval,
      expires_in: d.expires_in,
      first_poll: pending.json.error,
      tokens_issued: true,
      has_refresh_token: true,
      has_id_token: Boolean(ok.json.id_token),
      reuse_error: again.json.error,
    };
  });

  await step('9b. device page: a wrong code shows an error', async () => {
    const four = await newContext(browser, rpOrigin, 'browser four');
    try {
      const p = four.page;
      await goto(p, `${base}/oauth2/device`, 'opening the device page');
      if ((await p.locator('form input[name="user_code"]').count()) !== 1) throw new Error(`no user_code input ${await seen(p)}`);
      await p.fill('form input[name="user_code"]', 'BCDF-GHJK');
      await navigate(p, () => p.click('form button[type="submit"]'), 'submitting a wrong code');
      if ((await p.locator('#code-error').count()) !== 1) throw new Error(`wrong code: no #code-error ${await seen(p)}`);
      const err = (await p.locator('#code-error').innerText()).trim();
      await shot(p, cfg.shots, '07-device-wrong-code', facts);
      facts.device_wrong_code_error = err;
    } finally {
      await four.context.close();
    }
  });

  await one.context.close();
  await two.context.close();
}

// ---------------------------------------------------------------- main

await main(loadConfig, run, OVERALL_TIMEOUT);

// Helpers shared by the interop checks oidc-client.mjs, fapi2.mjs and dcr.mjs:
// inputs from the environment, the check harness and its report, a minimal
// browser that signs in through the login form, and the authorization code
// flow with openid-client.
//
// Report format (read by the Rust tests): one `ok - <name>` / `not ok - <name>`
// line per check, details as `#   ` lines, then `N passed, M failed` from
// finish(), whose exit status is 1 when anything failed.

import { createHash } from 'node:crypto';
import * as client from 'openid-client';
import * as jose from 'jose';

// ---------------------------------------------------------------- inputs

// The environment variable `name`; exits with status 2 when it is unset or empty.
export function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`missing environment variable ${name}`);
    process.exit(2);
  }
  return v;
}

// The private JWK in the environment variable `name`.
export function parseJwk(name) {
  let jwk;
  try {
    jwk = JSON.parse(env(name));
  } catch (err) {
    console.error(`${name} is not JSON: ${err.message}`);
    process.exit(2);
  }
  if (typeof jwk?.d !== 'string' || typeof jwk.kid !== 'string' || !jwk.kid) {
    console.error(`${name} must be a private JWK (with "d") that has a "kid"`);
    process.exit(2);
  }
  return jwk;
}

// ---------------------------------------------------------------- harness

let passed = 0;
let failed = 0;

// Runs one check. `fn` gets `note(text)` for details printed under the ok line
// (and with the error when the check fails).
export async function check(name, fn) {
  const notes = [];
  try {
    await fn((text) => notes.push(text));
    passed += 1;
    console.log(`ok - ${name}`);
    for (const n of notes) for (const line of n.split('\n')) console.log(`#   ${line}`);
  } catch (err) {
    failed += 1;
    console.log(`not ok - ${name}`);
    let text = describe(err);
    // a 401 with a WWW-Authenticate challenge: the OAuth error is in the body
    if (err instanceof client.WWWAuthenticateChallengeError && !err.response.bodyUsed) {
      text += `\nbody: ${await err.response.text().catch((e) => `(unreadable: ${e.message})`)}`;
    }
    for (const n of notes) text += `\n${n}`;
    for (const line of text.split('\n')) console.log(`#   ${line}`);
  }
}

// Prints `N passed, M failed` and exits: status 1 when a check failed.
export function finish() {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

export function describe(err) {
  if (!(err instanceof Error)) return String(err);
  const parts = [`${err.name}: ${err.message}`];
  if (err.code) parts.push(`code: ${err.code}`);
  if (err.error) parts.push(`error: ${err.error}`);
  if (err.error_description) parts.push(`error_description: ${err.error_description}`);
  if (err.status) parts.push(`status: ${err.status}`);
  if (err.cause !== undefined) {
    let cause = err.cause;
    if (cause instanceof Error) cause = `${cause.name}: ${cause.message}`;
    else if (cause instanceof URLSearchParams) cause = cause.toString();
    else if (typeof cause === 'object') {
      try {
        cause = JSON.stringify(cause);
      } catch {
        cause = String(cause);
      }
    }
    parts.push(`cause: ${cause}`);
  }
  return parts.join('\n');
}

export function assert(cond, message) {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}

export function assertEq(actual, expected, what) {
  if (actual !== expected) {
    throw new Error(
      `assertion failed: ${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
    );
  }
}

// at_hash / c_hash: base64url of the left half of the hash that matches the
// JWS alg of the ID token (OIDC Core 3.1.3.6).
export function halfHash(alg, value) {
  const bits = { 256: 'sha256', 384: 'sha384', 512: 'sha512' }[alg.slice(-3)];
  assert(bits, `unsupported ID token alg ${alg}`);
  const digest = createHash(bits).update(value, 'ascii').digest();
  return jose.base64url.encode(digest.subarray(0, digest.length / 2));
}

// ------------------------------------------------------------ plain HTTP

// One request with fetch (no redirects followed); the body is read as text
// and parsed as JSON when it is JSON. `token`: a Bearer token; `json` or
// `form`: the body, sent as JSON or form-urlencoded.
export async function request(url, { method = 'GET', token, json, form, headers = {} } = {}) {
  const h = { accept: 'application/json', ...headers };
  if (token != null) h.authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    h['content-type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    h['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form);
  }
  const res = await fetch(url, { method, headers: h, body, redirect: 'manual' });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, json: parsed, text };
}

// ------------------------------------------------------- a minimal browser
// Keeps cookies for the issuer's origin, never follows redirects, and can
// find and submit the login form. Only what is needed to play a user agent.

export class Browser {
  constructor() {
    this.cookies = new Map();
  }

  cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  store(res) {
    for (const sc of res.headers.getSetCookie()) {
      const [pair, ...attrs] = sc.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k, v] = a.split('=').map((s) => s.trim());
        return (k.toLowerCase() === 'max-age' && Number(v) <= 0) ||
          (k.toLowerCase() === 'expires' && Date.parse(v) < Date.now());
      });
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async request(url, init = {}) {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', this.cookieHeader());
    headers.set('accept', 'text/html,application/xhtml+xml');
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    this.store(res);
    return res;
  }
}

function decodeEntities(s) {
  const named = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, ent) => {
    if (ent[0] === '#') {
      const cp = ent[1] === 'x' || ent[1] === 'X' ? parseInt(ent.slice(2), 16) : parseInt(ent.slice(1), 10);
      return String.fromCodePoint(cp);
    }
    return named[ent.toLowerCase()] ?? m;
  });
}

function parseAttrs(tag) {
  const attrs = {};
  const re = /([^\s=\/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g;
  // skip the element name
  const body = tag.replace(/^<\s*[a-z]+/i, '');
  let m;
  while ((m = re.exec(body))) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

// A short human-readable summary of an HTML page, for error messages: the
// text of an element with class "error" if there is one, else the page's text.
export function pageSummary(html) {
  const text = (s) => decodeEntities(s.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim();
  const err = html.match(/<(\w+)[^>]*class\s*=\s*["'][^"']*\berror\b[^"']*["'][^>]*>([\s\S]*?)<\/\1>/i);
  if (err) return `error on page: ${text(err[2])}`;
  const body = html.match(/<body[^>]*>([\s\S]*)<\/body>/i)?.[1] ?? html;
  return text(body.replace(/<(style|script)[^>]*>[\s\S]*?<\/\1>/gi, '')).slice(0, 300);
}

// Finds the single <form method=post> in the page; returns its absolute
// action URL and its input fields (name -> value).
export function parseLoginForm(html, pageUrl) {
  const forms = [...html.matchAll(/<form\b[^>]*>[\s\S]*?<\/form>/gi)].map((m) => m[0]);
  const posts = forms.filter((f) => /method\s*=\s*["']?post/i.test(f.match(/<form\b[^>]*>/i)[0]));
  assertEq(posts.length, 1, 'number of POST forms on the login page');
  const form = posts[0];
  const formAttrs = parseAttrs(form.match(/<form\b[^>]*>/i)[0]);
  const action = new URL(formAttrs.action ?? '', pageUrl);
  const fields = new URLSearchParams();
  for (const m of form.matchAll(/<input\b[^>]*>/gi)) {
    const a = parseAttrs(m[0]);
    if (!a.name) continue;
    fields.set(a.name, a.value ?? '');
  }
  return { action, fields };
}

// ------------------------------------------ the authorization code flow

// The code-flow helpers for one server, user and redirect URI: `issuer`,
// `username` and `password` (the user who signs in), `redirectUri` and
// `scope` (of every authorization request).
export function codeFlow({ issuer, username, password, redirectUri, scope }) {
  // Runs one authorization request in `browser`. When `expectLogin` the server
  // must answer with the login page, which is filled in and submitted;
  // otherwise it must redirect straight back. Returns the callback URL (not
  // followed).
  async function authorize(browser, authUrl, { expectLogin }) {
    const res = await browser.request(authUrl);
    let location;
    if (expectLogin) {
      if (res.status !== 200) {
        throw new Error(`authorization endpoint: expected the login page (200), got ${res.status}` +
          `${res.headers.get('location') ? ` to ${res.headers.get('location')}` : ''}: ${pageSummary(await res.text())}`);
      }
      assert(
        (res.headers.get('content-type') ?? '').startsWith('text/html'),
        `login page content-type is text/html (got ${res.headers.get('content-type')})`,
      );
      const { action, fields } = parseLoginForm(await res.text(), authUrl);
      assertEq(action.origin, new URL(issuer).origin, 'login form posts to the issuer');
      assert(fields.has('username') && fields.has('password'), 'login form has username and password fields');
      fields.set('username', username);
      fields.set('password', password);
      const post = await browser.request(action, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          origin: new URL(issuer).origin,
        },
        body: fields,
      });
      if (post.status !== 303 && post.status !== 302) {
        throw new Error(`login POST: expected a redirect, got ${post.status}: ${pageSummary(await post.text())}`);
      }
      location = post.headers.get('location');
    } else {
      if (res.status !== 302 && res.status !== 303) {
        throw new Error(
          `authorization with an existing session: expected a redirect, got ${res.status}: ${pageSummary(await res.text())}`,
        );
      }
      await res.arrayBuffer();
      location = res.headers.get('location');
    }
    assert(location, 'redirect has a Location header');
    const callback = new URL(location, authUrl);
    assertEq(`${callback.origin}${callback.pathname}`, redirectUri, 'redirect target');
    assert(callback.searchParams.has('code'), `callback carries a code (${callback.search})`);
    return callback;
  }

  // Starts a fresh code flow for `config`: state, nonce and a PKCE S256 pair.
  // With `par`, the parameters are pushed first (RFC 9126; `dpop`: a DPoP
  // handle for the push) and the URL carries only client_id and request_uri.
  // With `jar` (a signing key: { key, kid }), the parameters go into a request
  // object signed with it (RFC 9101); the URL carries only client_id and
  // request, or, with `par` too, that pair is pushed.
  async function newAuthorization(config, { par = false, jar, dpop } = {}) {
    const codeVerifier = client.randomPKCECodeVerifier();
    const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
    const state = client.randomState();
    const nonce = client.randomNonce();
    const params = {
      redirect_uri: redirectUri,
      scope,
      code_challenge: codeChallenge,
      code_challenge_method: 'S256',
      state,
      nonce,
    };
    const parOptions = dpop ? { DPoP: dpop } : undefined;
    if (jar) {
      const jarUrl = await client.buildAuthorizationUrlWithJAR(config, params, jar);
      const request = jarUrl.searchParams.get('request');
      const url = par ? await client.buildAuthorizationUrlWithPAR(config, jarUrl.searchParams, parOptions) : jarUrl;
      return { url, codeVerifier, codeChallenge, state, nonce, request };
    }
    const url = par
      ? await client.buildAuthorizationUrlWithPAR(config, params, parOptions)
      : client.buildAuthorizationUrl(config, params);
    return { url, codeVerifier, codeChallenge, state, nonce };
  }

  return { authorize, newAuthorization };
}

// The code grant for `callback` of the authorization `auth` (from
// newAuthorization): state, PKCE verifier and nonce checked, ID token expected.
// `options` goes to authorizationCodeGrant (DPoP).
export async function redeem(config, callback, auth, options) {
  return client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: auth.codeVerifier,
    expectedState: auth.state,
    expectedNonce: auth.nonce,
    idTokenExpected: true,
  }, undefined, options);
}

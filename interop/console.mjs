// End-to-end check of Tether's web console ({base}/console) in a real headless
// Chromium, driven by playwright-core (no browser download: the Chromium named
// in the config is used). Run by crates/tether/tests/it/console.rs.
//
// Usage: NODE_EXTRA_CA_CERTS=/path/ca.pem node interop/console.mjs CONFIG.json
//
// CONFIG.json:
//   {"base": "https://localhost:PORT",        the issuer; the console is at {base}/console
//    "ca_file": "/path/ca.pem",                the test CA that signed the server certificate
//    "chromium": "/usr/bin/chromium",
//    "shots": "/dir/for/screenshots",
//    "users": {"admin":  {"username", "password"},   role admin
//              "viewer": {"username", "password"},   role viewer
//              "none":   {"username", "password"}},  no role
//    "handoff": true}                          optional, default true (see below)
//
// TLS: nothing turns certificate verification off. Node's own requests trust
// ca_file; Chromium is told to accept exactly the server key that Node
// verified against ca_file (--ignore-certificate-errors-spki-list), so the
// origin stays a secure context and Secure cookies behave as in production.
// Playwright's APIRequestContext (page.request, used for the viewer's forged
// POSTs) sends its requests from this Node process, hence NODE_EXTRA_CA_CERTS
// must name ca_file as well (Node reads it only at startup).
//
// Hand-offs: twice the run stops for the test to check, from outside, what the
// console just configured. The script writes one JSON line on stdout,
//   {"step":"created","client_id":...,"client_secret":...}   the certificate-bound app exists
//   {"step":"dpop","client_id":...}                          its binding is now dpop
// and waits for the line "go" on stdin (with "handoff": false it does not wait).
// At "created" the test also shows the app's token to userinfo with another
// certificate: the binding.mismatch event that the events step looks for.
//
// Output: the last stdout line is {"ok":true,"facts":{...}} with exit status 0,
// or {"ok":false,"error":"step \"NAME\" failed: ...","facts":{...}} (the facts
// gathered so far) with exit status 1. Progress goes to stderr.

import { createHash } from 'node:crypto';
import { readFileSync, mkdirSync, statSync } from 'node:fs';
import readline from 'node:readline';
import tls from 'node:tls';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  assert,
  assertEq,
  configure,
  excerpt,
  fillAndSubmitLogin,
  goto,
  log,
  loginForm,
  main,
  navigate,
  notePage,
  seen,
  squash,
  step,
  watchPage,
  withTimeout,
} from './pages-lib.mjs';

const STEP_TIMEOUT = 30_000; // ms, per browser action / HTTP request
const HANDOFF_TIMEOUT = 90_000; // ms, for the test's "go"
const OVERALL_TIMEOUT = 280_000; // ms, the whole run (below the 300 s the Rust test allows)
configure({ tag: 'console.mjs', stepTimeout: STEP_TIMEOUT });

const APP_NAME = 'Console Cert App';
const TEMP_APP_NAME = 'Console Temp App';
const GRANT_TYPES = [
  'authorization_code',
  'refresh_token',
  'client_credentials',
  'password',
  'urn:ietf:params:oauth:grant-type:device_code',
  'urn:ietf:params:oauth:grant-type:token-exchange',
];
const BINDINGS = ['none', 'cookie', 'sso-session', 'certificate', 'device-flow', 'client-request', 'dpop'];
const NAV = {
  Overview: '/console',
  Applications: '/console/apps',
  Users: '/console/users',
  Tokens: '/console/tokens',
  Keys: '/console/keys',
  Events: '/console/events',
};
const SIGNOUT = '/console/signout';

// ---------------------------------------------------------------- output

// ---------------------------------------------------------------- config

function loadConfig() {
  const file = process.argv[2];
  if (!file) throw new Error('usage: NODE_EXTRA_CA_CERTS=CA.pem node console.mjs CONFIG.json');
  const cfg = JSON.parse(readFileSync(file, 'utf8'));
  for (const k of ['base', 'ca_file', 'chromium', 'shots', 'users']) {
    if (!cfg[k]) throw new Error(`config: missing ${k}`);
  }
  for (const u of ['admin', 'viewer', 'none']) {
    for (const k of ['username', 'password']) {
      if (!cfg.users[u]?.[k]) throw new Error(`config: missing users.${u}.${k}`);
    }
  }
  if (!process.env.NODE_EXTRA_CA_CERTS) {
    throw new Error(
      'NODE_EXTRA_CA_CERTS is not set: set it to ca_file (Playwright sends page.request calls from Node, ' +
        'which must trust the test CA)',
    );
  }
  cfg.base = cfg.base.replace(/\/+$/, '');
  cfg.handoff = cfg.handoff !== false;
  return cfg;
}

// ---------------------------------------------------------------- helpers

// ---------------------------------------------------------------- hand-offs (stdin)

const stdinLines = [];
const stdinWaiters = [];
let stdinClosed = false;
function listenStdin() {
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    const w = stdinWaiters.shift();
    if (w) w.resolve(line);
    else stdinLines.push(line);
  });
  rl.on('close', () => {
    stdinClosed = true;
    for (const w of stdinWaiters.splice(0)) w.reject(new Error('stdin closed before the test answered'));
  });
}
function nextStdinLine() {
  if (stdinLines.length) return Promise.resolve(stdinLines.shift());
  if (stdinClosed) return Promise.reject(new Error('stdin closed before the test answered'));
  return new Promise((resolve, reject) => stdinWaiters.push({ resolve, reject }));
}

// Tell the test what was just done, and wait until it has checked it.
async function handOff(cfg, msg) {
  process.stdout.write(`${JSON.stringify(msg)}\n`);
  if (!cfg.handoff) return;
  log(`waiting for "go" after ${msg.step}`);
  const line = await withTimeout(nextStdinLine(), HANDOFF_TIMEOUT, `waiting for "go" after ${msg.step}`);
  if (line.trim() !== 'go') throw new Error(`after ${msg.step} the test answered ${JSON.stringify(line)}, not "go"`);
}

// ---------------------------------------------------------------- TLS

// The server's public key (SPKI, SHA-256, base64), read from a connection
// that verified the server certificate against the CA.
function spkiHash(base, ca) {
  const url = new URL(base);
  const conn = new Promise((resolve, reject) => {
    const sock = tls.connect(
      { host: url.hostname, port: Number(url.port || 443), servername: url.hostname, ca, autoSelectFamily: true },
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

// ---------------------------------------------------------------- browser helpers

// The redirects that led to `resp`: [{path, status}, ...], the first request first.
async function redirectChain(resp) {
  const hops = [];
  if (!resp) return hops;
  hops.unshift({ path: new URL(resp.url()).pathname, status: resp.status() });
  let req = resp.request().redirectedFrom();
  while (req) {
    const r = await req.response();
    hops.unshift({ path: new URL(req.url()).pathname, status: r ? r.status() : null });
    req = req.redirectedFrom();
  }
  return hops;
}

const pathOf = (page) => new URL(page.url()).pathname;
const isLoginPage = (page, baseOrigin) =>
  new URL(page.url()).origin === baseOrigin && /\/authorize$/.test(pathOf(page));

async function expectStatus(page, resp, status, what) {
  const got = resp ? resp.status() : null;
  if (got !== status) throw new Error(`${what}: expected HTTP ${status}, got ${got} ${await seen(page)}`);
}

async function shot(page, dir, name, facts) {
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true, timeout: STEP_TIMEOUT });
  const size = statSync(file).size;
  log(`screenshot ${file} (${size} bytes)`);
  (facts.screenshots ??= []).push(file);
}

// The submit button of `form` (a locator) labelled `label` (a RegExp); with
// `loose`, a form's only button whatever its label.
async function submitButton(page, form, label, what, loose) {
  const all = form.locator('button[type="submit"], button:not([type]), input[type="submit"]');
  const n = await all.count();
  if (n === 0) throw new Error(`${what}: the form has no submit button ${await seen(page)}`);
  // Without a label: the form's default button (the first, as Enter would use).
  if (!label) return all.first();
  for (let i = 0; i < n; i++) {
    const b = all.nth(i);
    const text = squash((await b.innerText().catch(() => '')) || (await b.getAttribute('value')) || '');
    if (label.test(text)) return b;
  }
  if (n === 1 && loose) return all.first();
  throw new Error(`${what}: no submit button labelled ${label} among ${n} ${await seen(page)}`);
}

async function submit(page, form, label, what, { loose = false } = {}) {
  const n = await form.count();
  if (n !== 1) throw new Error(`${what}: expected one form, found ${n} ${await seen(page)}`);
  const method = await form.evaluate((f) => f.method);
  assertEq(method, 'post', `${what}: form method`);
  const b = await submitButton(page, form, label, what, loose);
  return navigate(page, () => b.click(), `${what}: submitting`);
}

// The forms that POST, as {action (path), csrf (value or null), buttons}.
function postForms(page) {
  return page.evaluate(() =>
    Array.from(document.forms)
      .filter((f) => f.method.toLowerCase() === 'post')
      .map((f) => {
        const csrf = f.querySelector('input[name="csrf"]');
        return {
          action: new URL(f.action, location.href).pathname,
          csrf: csrf ? { type: csrf.type, value: csrf.value } : null,
          buttons: Array.from(f.querySelectorAll('button, input[type="submit"]')).map(
            (b) => (b.innerText || b.value || '').replace(/\s+/g, ' ').trim(),
          ),
        };
      }),
  );
}

// Every console page: <nav> with the six links, a POST form to /console/signout
// (in the <nav> or next to it: the page header), one <h1>, and a hidden,
// non-empty csrf input in every POST form.
async function checkLayout(page, what) {
  const layout = await page.evaluate(() => {
    const nav = document.querySelector('nav');
    return {
      nav: Boolean(nav),
      links: nav
        ? Array.from(nav.querySelectorAll('a[href]')).map((a) => ({
            text: a.innerText.replace(/\s+/g, ' ').trim(),
            path: new URL(a.href, location.href).pathname,
          }))
        : [],
      signout: Array.from(document.forms).some(
        (f) => f.method.toLowerCase() === 'post' && new URL(f.action, location.href).pathname === '/console/signout',
      ),
      h1: Array.from(document.querySelectorAll('h1')).map((h) => h.innerText.replace(/\s+/g, ' ').trim()),
    };
  });
  if (!layout.nav) throw new Error(`${what}: no <nav> ${await seen(page)}`);
  for (const [text, p] of Object.entries(NAV)) {
    const ok = layout.links.some((l) => l.path.replace(/\/$/, '') === p && l.text.toLowerCase().includes(text.toLowerCase()));
    if (!ok) {
      throw new Error(`${what}: <nav> has no link "${text}" to ${p}; it has ${JSON.stringify(layout.links)} ${await seen(page)}`);
    }
  }
  if (!layout.signout) throw new Error(`${what}: no POST form to ${SIGNOUT} ${await seen(page)}`);
  if (layout.h1.length !== 1 || !layout.h1[0]) {
    throw new Error(`${what}: expected one non-empty <h1>, found ${JSON.stringify(layout.h1)} ${await seen(page)}`);
  }
  for (const f of await postForms(page)) {
    if (!f.csrf || f.csrf.type !== 'hidden' || !f.csrf.value) {
      throw new Error(`${what}: the POST form to ${f.action} has no hidden, non-empty csrf input (${JSON.stringify(f.csrf)})`);
    }
  }
  return layout.h1[0];
}

// Open a console page signed in: 200 (unless `status` says otherwise), still
// the page asked for (not the login page), with the common layout.
async function consolePage(page, x, pathAndQuery, what, { status = 200, layout = true } = {}) {
  const resp = await goto(page, `${x.base}${pathAndQuery}`, what);
  if (isLoginPage(page, x.baseOrigin)) {
    throw new Error(`${what}: sent to the login page, the console session is gone ${await seen(page)}`);
  }
  const want = new URL(pathAndQuery, x.base).pathname;
  if (pathOf(page) !== want) throw new Error(`${what}: expected ${want}, landed on ${await seen(page)}`);
  await expectStatus(page, resp, status, what);
  if (layout) await checkLayout(page, what);
  return resp;
}

// The `.flash` message (role=status).
async function flash(page, what) {
  const f = page.locator('.flash');
  const n = await f.count();
  if (n < 1) throw new Error(`${what}: no .flash message ${await seen(page)}`);
  const role = await f.first().getAttribute('role');
  assertEq(role, 'status', `${what}: role of .flash`);
  return squash(await f.first().innerText());
}

// Data rows (with <td>) of a table, as {text, cells, links (paths), forms (POST actions)}.
// With `optional`, a missing table is no rows (an empty list may be a sentence instead).
async function tableRows(page, selector, what, { optional = false } = {}) {
  const n = await page.locator(selector).count();
  if (n === 0 && optional) return [];
  if (n !== 1) throw new Error(`${what}: expected one ${selector}, found ${n} ${await seen(page)}`);
  return page.locator(selector).evaluate((t) =>
    Array.from(t.querySelectorAll('tr'))
      .filter((tr) => tr.querySelector('td'))
      .map((tr) => ({
        text: tr.innerText.replace(/\s+/g, ' ').trim(),
        cells: Array.from(tr.querySelectorAll('td')).map((td) => td.innerText.replace(/\s+/g, ' ').trim()),
        kid: tr.getAttribute('data-kid'),
        links: Array.from(tr.querySelectorAll('a[href]')).map((a) => new URL(a.href, location.href).pathname),
        forms: Array.from(tr.querySelectorAll('form'))
          .filter((f) => f.method.toLowerCase() === 'post')
          .map((f) => new URL(f.action, location.href).pathname),
      })),
  );
}

// Click the one link named `name` (a RegExp) and wait for the page.
async function clickLink(page, scope, name, what) {
  const link = scope.getByRole('link', { name });
  const n = await link.count();
  if (n < 1) throw new Error(`${what}: no link ${name} ${await seen(page)}`);
  return navigate(page, () => link.first().click(), `${what}: following the link ${name}`);
}

async function signIn(page, x, user, startPath, what) {
  const first = await goto(page, `${x.base}${startPath}`, `${what}: opening ${startPath}`);
  if (!isLoginPage(page, x.baseOrigin)) {
    throw new Error(`${what}: ${startPath} did not lead to the server's login page ${await seen(page)}`);
  }
  const before = await redirectChain(first);
  await loginForm(page, `${what}: login page`);
  const resp = await fillAndSubmitLogin(page, user.username, user.password, `${what}: signing in as ${user.username}`);
  const after = await redirectChain(resp);
  return { resp, before, after, login_path: new URL(first.url()).pathname };
}

async function newContext(browser, label) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  const page = await context.newPage();
  watchPage(page);
  // The pages work without script; should one ask "are you sure?" (window.confirm), say yes
  // (Playwright would dismiss it, and the form would silently not be sent).
  page.on('dialog', (d) => {
    log(`${label}: accepting a ${d.type()} dialog: ${d.message()}`);
    d.accept().catch((e) => notePage(page, `accepting a dialog failed: ${e.message}`));
  });
  return { context, page, label };
}

// ---------------------------------------------------------------- the app form

// Fill the new-application form (or the edit form) `form` with `spec`.
async function fillAppForm(page, form, spec, what) {
  const name = form.locator('input[name="name"]');
  if ((await name.count()) !== 1) throw new Error(`${what}: no input name ${await seen(page)}`);
  await name.fill(spec.name);
  const boxes = form.locator('input[type="checkbox"][name="grant_types"]');
  const values = [];
  for (let i = 0; i < (await boxes.count()); i++) values.push(await boxes.nth(i).getAttribute('value'));
  for (const g of GRANT_TYPES) {
    if (!values.includes(g)) throw new Error(`${what}: no grant_types checkbox ${g}; there are ${JSON.stringify(values)}`);
  }
  for (let i = 0; i < values.length; i++) await boxes.nth(i).setChecked(spec.grants.includes(values[i]));
  // Set directly: a script may hide the field while authorization_code is not chosen.
  const uris = form.locator('textarea[name="redirect_uris"]');
  if ((await uris.count()) !== 1) throw new Error(`${what}: no textarea redirect_uris ${await seen(page)}`);
  await uris.evaluate((el, v) => {
    el.value = v;
  }, spec.redirect_uris ?? '');
  for (const box of ['public', 'validate_binding', 'revoke_on_logout']) {
    const b = form.locator(`input[type="checkbox"][name="${box}"]`);
    if ((await b.count()) !== 1) throw new Error(`${what}: no checkbox ${box} ${await seen(page)}`);
    assertEq(await b.getAttribute('value'), 'true', `${what}: value of the ${box} checkbox`);
    await b.setChecked(Boolean(spec[box]));
  }
  const binding = form.locator('select[name="binding"]');
  const options = await binding.locator('option').evaluateAll((os) => os.map((o) => o.value));
  for (const b of BINDINGS) {
    if (!options.includes(b)) throw new Error(`${what}: the binding select has no option ${b}: ${JSON.stringify(options)}`);
  }
  await binding.selectOption(spec.binding);
  await form.locator('select[name="token_type"]').selectOption(spec.token_type);
  await form.locator('input[name="scopes"]').fill(spec.scopes ?? '');
}

// ---------------------------------------------------------------- the run

async function run(cfg, facts) {
  const ca = readFileSync(cfg.ca_file);
  const { base } = cfg;
  const baseOrigin = new URL(base).origin;
  mkdirSync(cfg.shots, { recursive: true });
  listenStdin();

  const spki = await step('read the server key through a CA-verified TLS connection', () => spkiHash(base, ca));
  facts.tls = { chromium_trust: 'ignore-certificate-errors-spki-list', server_spki_sha256: spki };

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
      ],
    }),
  );
  try {
    facts.chromium_version = browser.version();
    await scenarios({ cfg, facts, browser, base, baseOrigin });
  } finally {
    await withTimeout(browser.close(), 10_000, 'closing Chromium').catch((e) => log(e.message));
  }
}

async function scenarios(x) {
  const { cfg, facts, browser, base } = x;
  const { admin, viewer, none } = cfg.users;
  const one = await newContext(browser, 'admin browser');
  const p = one.page;

  // ------------------------------------------------------------ 2. sign in
  await step('2. admin: /console leads to the login page, then back to the overview', async () => {
    const s = await signIn(p, x, admin, '/console', 'admin');
    assertEq(s.before[0]?.path, '/console', 'first request');
    assertEq(s.before[0]?.status, 303, 'GET /console when signed out (redirect status)');
    assert(
      s.after.some((h) => h.path === '/console/callback'),
      `after signing in the browser did not pass /console/callback: ${JSON.stringify(s.after)}`,
    );
    const cb = s.after.find((h) => h.path === '/console/callback');
    assertEq(cb.status, 303, '/console/callback status');
    assertEq(pathOf(p).replace(/\/$/, ''), '/console', `landing page after sign-in ${await seen(p)}`);
    await expectStatus(p, s.resp, 200, 'overview after sign-in');
    await checkLayout(p, 'overview');
    for (const id of ['#counts', '#warnings', '#recent-events']) {
      if ((await p.locator(id).count()) !== 1) throw new Error(`overview: no ${id} ${await seen(p)}`);
    }
    assert(await p.locator('#counts').isVisible(), 'overview: #counts is not visible');
    const counts = squash(await p.locator('#counts').innerText());
    assert(/\d/.test(counts), `#counts shows no number: "${counts}"`);
    facts.login = { path: s.login_path, before: s.before, after: s.after, counts };

    const jar = await one.context.cookies();
    const c = jar.find((k) => k.name === 'tether_console');
    assert(c, `no tether_console cookie; the browser holds: ${JSON.stringify(jar.map((k) => `${k.name} (${k.path})`))}`);
    facts.console_cookie = {
      domain: c.domain, path: c.path, secure: c.secure, httpOnly: c.httpOnly, sameSite: c.sameSite, expires: c.expires,
    };
    assertEq(c.secure, true, 'tether_console secure');
    assertEq(c.httpOnly, true, 'tether_console httpOnly');
    assertEq(c.sameSite, 'Lax', 'tether_console sameSite');
    assertEq(c.path, '/console', 'tether_console path');
    assertEq(c.domain, new URL(base).hostname, 'tether_console domain (host-only)');
  });

  // ------------------------------------------------------------ 3. create the app
  const app = await step('3. create "Console Cert App" (client_credentials, certificate, jwt)', async () => {
    await consolePage(p, x, '/console/apps', 'applications');
    await clickLink(p, p.locator('body'), /new application/i, 'applications');
    assertEq(pathOf(p), '/console/apps/new', `"New application" leads to ${await seen(p)}`);
    await checkLayout(p, 'new application');
    const form = p.locator('form:has(input[name="name"]):has(input[name="grant_types"])');
    if ((await form.count()) !== 1) throw new Error(`new application: no POST form with name and grant_types ${await seen(p)}`);
    assertEq(new URL(await form.evaluate((f) => f.action)).pathname, '/console/apps', 'new application form action');

    // A form error first: authorization_code needs a redirect URI.
    await fillAppForm(p, form, { name: 'Console Bad App', grants: ['authorization_code'], binding: 'none', token_type: 'opaque' },
      'new application (invalid)');
    const bad = await submit(p, form, null, 'new application (invalid)');
    await expectStatus(p, bad, 400, 'a new authorization_code app without redirect URIs');
    const err = p.locator('.error');
    if ((await err.count()) < 1) throw new Error(`form error: no .error element ${await seen(p)}`);
    assertEq(await err.first().getAttribute('role'), 'alert', 'role of .error');
    const errText = squash(await err.first().innerText());
    assert(errText.length > 0, 'form error: .error is empty');
    facts.form_error = { status: bad.status(), text: errText };

    await consolePage(p, x, '/console/apps/new', 'new application');
    const form2 = p.locator('form:has(input[name="name"]):has(input[name="grant_types"])');
    await fillAppForm(p, form2, { name: APP_NAME, grants: ['client_credentials'], binding: 'certificate', token_type: 'jwt' },
      'new application');
    const created = await submit(p, form2, null, 'new application');
    await expectStatus(p, created, 200, 'creating the app');
    for (const id of ['#client-id', '#client-secret']) {
      if ((await p.locator(id).count()) !== 1) throw new Error(`after creating the app: no ${id} ${await seen(p)}`);
    }
    const clientId = squash(await p.locator('#client-id').innerText());
    const clientSecret = squash(await p.locator('#client-secret').innerText());
    assert(/^[A-Za-z0-9_-]{16,}$/.test(clientId), `#client-id is not a client_id: "${clientId}"`);
    assert(clientSecret.length >= 16 && !/\s/.test(clientSecret), `#client-secret is not a secret: "${clientSecret}"`);
    const appPath = `/console/apps/${encodeURIComponent(clientId)}`;
    const links = await p.locator('a[href]').evaluateAll((as) => as.map((a) => new URL(a.href, location.href).pathname));
    assert(links.includes(appPath), `the created page has no link to ${appPath}: ${JSON.stringify(links)}`);
    facts.app = { name: APP_NAME, client_id: clientId, path: appPath };
    return { clientId, clientSecret, path: appPath };
  });

  await step('4. hand-off: the test gets a certificate-bound token over mTLS', () =>
    handOff(cfg, { step: 'created', client_id: app.clientId, client_secret: app.clientSecret }));

  // ------------------------------------------------------------ 5. binding -> dpop
  await step('5. app page: the binding becomes dpop', async () => {
    await consolePage(p, x, `/console/apps?q=${encodeURIComponent('Cert App')}`, 'applications ?q=Cert App');
    const rows = await tableRows(p, 'table#apps', 'applications ?q=Cert App');
    const row = rows.find((r) => r.links.includes(app.path));
    assert(row, `?q=Cert App does not list the app (${app.path}): ${JSON.stringify(rows)}`);
    for (const want of [APP_NAME, app.clientId, /client[_ ]credentials/i, /certificate/i]) {
      const ok = typeof want === 'string' ? row.text.includes(want) : want.test(row.text);
      assert(ok, `the app's row does not show ${want}: "${row.text}"`);
    }
    await consolePage(p, x, '/console/apps?q=zz-no-such-app-zz', 'applications ?q=zz-no-such-app-zz');
    const none0 = await tableRows(p, 'table#apps', 'applications ?q=zz-no-such-app-zz', { optional: true });
    assert(!none0.some((r) => r.links.includes(app.path)), `?q=zz-no-such-app-zz lists the app: ${JSON.stringify(none0)}`);

    await consolePage(p, x, `/console/apps?q=${encodeURIComponent('Cert App')}`, 'applications ?q=Cert App');
    await navigate(p, () => p.locator(`table#apps a[href$="${app.path}"]`).first().click(), 'opening the app page');
    assertEq(pathOf(p), app.path, 'app page path');
    await checkLayout(p, 'app page');
    const form = p.locator('form:has(fieldset#token-binding)');
    if ((await form.count()) !== 1) throw new Error(`app page: no POST form with fieldset#token-binding ${await seen(p)}`);
    assertEq(new URL(await form.evaluate((f) => f.action)).pathname, app.path, 'edit form action');
    const fs = form.locator('fieldset#token-binding');
    const legend = squash(await fs.locator('legend').first().innerText());
    assert(/access token/i.test(legend), `fieldset#token-binding legend is "${legend}", not "Access Token"`);
    for (const n of ['select[name="binding"]', 'input[name="validate_binding"]', 'input[name="revoke_on_logout"]']) {
      if ((await fs.locator(n).count()) !== 1) throw new Error(`fieldset#token-binding has no ${n} ${await seen(p)}`);
    }
    // Prefilled with what was created.
    assertEq(await form.locator('input[name="name"]').inputValue(), APP_NAME, 'prefilled name');
    assertEq(await form.locator('input[name="grant_types"][value="client_credentials"]').isChecked(), true,
      'prefilled grant client_credentials');
    assertEq(await form.locator('input[name="grant_types"][value="authorization_code"]').isChecked(), false,
      'prefilled grant authorization_code');
    assertEq(await form.locator('select[name="token_type"]').inputValue(), 'jwt', 'prefilled token_type');
    assertEq(await fs.locator('select[name="binding"]').inputValue(), 'certificate', 'prefilled binding');
    assertEq(await fs.locator('input[name="validate_binding"]').isChecked(), false, 'prefilled validate_binding');
    assertEq(await fs.locator('input[name="revoke_on_logout"]').isChecked(), false, 'prefilled revoke_on_logout');

    await fs.locator('select[name="binding"]').selectOption('dpop');
    const saved = await submit(p, form, /save/i, 'saving the app', { loose: true });
    await expectStatus(p, saved, 200, 'saving the app');
    const msg = await flash(p, 'after saving the app');
    assert(/saved/i.test(msg), `after saving the flash says "${msg}", not "Saved"`);

    await consolePage(p, x, app.path, 'app page again');
    const after = await p.locator('fieldset#token-binding select[name="binding"]').inputValue();
    assertEq(after, 'dpop', 'binding shown after saving');
    facts.app.binding_saved = after;
    facts.app.saved_flash = msg;
  });

  await step('5b. hand-off: the test gets a DPoP-bound token', () =>
    handOff(cfg, { step: 'dpop', client_id: app.clientId }));

  // ------------------------------------------------------------ 6. users
  await step('6. users: create carol (no roles), sign her out everywhere', async () => {
    await consolePage(p, x, '/console/users', 'users');
    const rows = await tableRows(p, 'table#users', 'users');
    for (const u of [admin.username, viewer.username, none.username]) {
      assert(rows.some((r) => r.links.includes(`/console/users/${u}`)), `users: no row linking to /console/users/${u}`);
    }
    await clickLink(p, p.locator('body'), /new user/i, 'users');
    assertEq(pathOf(p), '/console/users/new', `"New user" leads to ${await seen(p)}`);
    await checkLayout(p, 'new user');
    const form = p.locator('form:has(input[name="username"]):has(input[name="password"])');
    if ((await form.count()) !== 1) throw new Error(`new user: no POST form with username and password ${await seen(p)}`);
    assertEq(new URL(await form.evaluate((f) => f.action)).pathname, '/console/users', 'new user form action');
    await form.locator('input[name="username"]').fill('carol');
    await form.locator('input[name="password"]').fill('carol-pw-1234');
    await form.locator('input[name="email"]').fill('carol@example.com');
    await form.locator('input[name="name"]').fill('Carol Console');
    for (const r of ['admin', 'viewer']) {
      const box = form.locator(`input[type="checkbox"][name="roles"][value="${r}"]`);
      if ((await box.count()) !== 1) throw new Error(`new user: no roles checkbox ${r} ${await seen(p)}`);
      await box.setChecked(false);
    }
    const created = await submit(p, form, null, 'new user');
    assert(created && created.status() < 400, `creating carol answered ${created?.status()} ${await seen(p)}`);
    facts.carol = { created_status: created.status(), created_path: pathOf(p) };

    await consolePage(p, x, '/console/users?q=carol', 'users ?q=carol');
    const found = await tableRows(p, 'table#users', 'users ?q=carol');
    assert(found.some((r) => r.links.includes('/console/users/carol')), `?q=carol does not list carol: ${JSON.stringify(found)}`);
    assert(!found.some((r) => r.links.includes(`/console/users/${admin.username}`)), '?q=carol lists the admin too');
    await navigate(p, () => p.locator('table#users a[href$="/console/users/carol"]').first().click(), 'opening carol');
    assertEq(pathOf(p), '/console/users/carol', 'carol page path');
    await checkLayout(p, 'carol');
    const edit = p.locator('form:has(input[name="email"])');
    if ((await edit.count()) !== 1) throw new Error(`carol: no edit form with email ${await seen(p)}`);
    assertEq(new URL(await edit.evaluate((f) => f.action)).pathname, '/console/users/carol', 'user edit form action');
    assertEq(await edit.locator('input[name="email"]').inputValue(), 'carol@example.com', "carol's email");
    assertEq(await edit.locator('input[name="name"]').inputValue(), 'Carol Console', "carol's name");
    for (const r of ['admin', 'viewer']) {
      assertEq(await edit.locator(`input[name="roles"][value="${r}"]`).isChecked(), false, `carol's role ${r}`);
    }
    assertEq(await edit.locator('input[type="checkbox"][name="disabled"]').getAttribute('value'), 'true', 'disabled checkbox value');
    const forms = await postForms(p);
    for (const a of ['/console/users/carol/password', '/console/users/carol/logout']) {
      assert(forms.some((f) => f.action === a), `carol's page has no POST form to ${a}: ${JSON.stringify(forms)}`);
    }
    const out = p.locator('form[action$="/console/users/carol/logout"]');
    const done = await submit(p, out, /sign out everywhere/i, 'Sign out everywhere');
    assert(done && done.status() < 400, `"Sign out everywhere" answered ${done?.status()} ${await seen(p)}`);
    const msg = await flash(p, 'after "Sign out everywhere"');
    assert(/signed out/i.test(msg), `after "Sign out everywhere" the flash says "${msg}"`);
    facts.carol.signed_out_flash = msg;

    // The admin's own page lists the session this browser signed in with.
    await consolePage(p, x, `/console/users/${admin.username}`, 'admin user page');
    const sessions = await tableRows(p, 'table#sessions', 'admin user page');
    assert(sessions.length >= 1, `table#sessions of ${admin.username} is empty ${await seen(p)}`);
    facts.admin_sessions = sessions.length;
  });

  // ------------------------------------------------------------ 6b. secret, delete
  await step('6b. a throwaway app: regenerate its secret, then delete it', async () => {
    await consolePage(p, x, '/console/apps/new', 'new application (temp)');
    const form = p.locator('form:has(input[name="name"]):has(input[name="grant_types"])');
    await fillAppForm(p, form, { name: TEMP_APP_NAME, grants: ['client_credentials'], binding: 'none', token_type: 'opaque' },
      'new application (temp)');
    await expectStatus(p, await submit(p, form, null, 'new application (temp)'), 200, 'creating the temp app');
    const id = squash(await p.locator('#client-id').innerText());
    const s1 = squash(await p.locator('#client-secret').innerText());
    const tmpPath = `/console/apps/${encodeURIComponent(id)}`;

    await consolePage(p, x, tmpPath, 'temp app page');
    const regen = p.locator(`form[action$="${tmpPath}/secret"]`);
    if ((await regen.count()) !== 1) throw new Error(`temp app: no POST form to ${tmpPath}/secret ${await seen(p)}`);
    const r = await submit(p, regen, /regenerate secret/i, 'Regenerate secret');
    await expectStatus(p, r, 200, 'regenerating the secret');
    if ((await p.locator('#client-secret').count()) !== 1) throw new Error(`after Regenerate secret: no #client-secret ${await seen(p)}`);
    const s2 = squash(await p.locator('#client-secret').innerText());
    assert(s2 && s2 !== s1, 'the regenerated secret is empty or the same as before');

    // Deleting needs a recent sign-in: the test moves the clock past it, the confirmation
    // page offers a fresh sign-in instead of the form, and comes back with the form.
    await handOff(cfg, { step: 'stale' });
    await consolePage(p, x, tmpPath, 'temp app page');
    await clickLink(p, p.locator('body'), /^delete\b/i, 'temp app page');
    assertEq(pathOf(p), `${tmpPath}/delete`, 'delete confirmation path (stale sign-in)');
    assertEq(await p.locator(`form[action$="${tmpPath}/delete"]`).count(), 0,
      'a sign-in older than five minutes gets no delete form');
    await clickLink(p, p.locator('main'), /sign in again/i, 'stale delete confirmation');
    if (!isLoginPage(p, x.baseOrigin)) throw new Error(`"Sign in again" did not lead to the login page ${await seen(p)}`);
    await loginForm(p, 're-authentication');
    await fillAndSubmitLogin(p, admin.username, admin.password, 're-authentication');
    assertEq(pathOf(p), `${tmpPath}/delete`, 'back at the confirmation after signing in again');
    facts.reauth = { asked: true, returned_to: pathOf(p) };
    await checkLayout(p, 'delete confirmation');
    const del = p.locator(`form[action$="${tmpPath}/delete"]`);
    if ((await del.count()) !== 1) throw new Error(`delete confirmation: no POST form to ${tmpPath}/delete ${await seen(p)}`);
    const gone = await submit(p, del, /delete application/i, 'Delete application');
    const chain = await redirectChain(gone);
    assertEq(chain[0]?.status, 303, `POST ${tmpPath}/delete status (${JSON.stringify(chain)})`);
    assertEq(pathOf(p), '/console/apps', 'after deleting');
    const msg = await flash(p, 'after deleting');
    const rows = await tableRows(p, 'table#apps', 'applications after deleting', { optional: true });
    assert(!rows.some((row) => row.links.includes(tmpPath)), `the deleted app is still listed: ${JSON.stringify(rows)}`);
    facts.temp_app = { client_id: id, secret_regenerated: true, deleted: true, deleted_flash: msg };
  });

  // ------------------------------------------------------------ 8. tokens
  // (before the keys: retiring the key that signed the app's JWTs would end them)
  await step('8. tokens: filter by the app, revoke one', async () => {
    const q = `/console/tokens?client_id=${encodeURIComponent(app.clientId)}`;
    await consolePage(p, x, q, 'tokens of the app');
    const rows = await tableRows(p, 'table#tokens', 'tokens of the app');
    assert(rows.length >= 1, `no token of ${app.clientId} is listed ${await seen(p)}`);
    for (const r of rows) assert(r.text.includes(app.clientId), `the filtered list shows another client's token: "${r.text}"`);
    const re = /^\/console\/tokens\/([^/]+)\/revoke$/;
    const row = rows.find((r) => r.forms.some((f) => re.test(f)));
    assert(row, `no token of the app has a Revoke form: ${JSON.stringify(rows)}`);
    const action = row.forms.find((f) => re.test(f));
    const tokenId = decodeURIComponent(action.match(re)[1]);
    assert(/\bactive\b/i.test(row.text), `the token with a Revoke form is not shown active: "${row.text}"`);
    const idCell = row.cells[0];
    const form = p.locator(`table#tokens form[action$="${action}"]`);
    const r = await submit(p, form, /^revoke$/i, 'Revoke');
    assert(r && r.status() < 400, `Revoke answered ${r?.status()} ${await seen(p)}`);
    await consolePage(p, x, q, 'tokens of the app after revoking');
    const after = await tableRows(p, 'table#tokens', 'tokens after revoking');
    const same = after.find((x2) => x2.cells[0] === idCell);
    assert(same, `the revoked token (${idCell}) is no longer listed: ${JSON.stringify(after)}`);
    assert(/\brevoked\b/i.test(same.text), `the revoked token's row does not say revoked: "${same.text}"`);
    assert(!same.forms.some((f) => re.test(f)), 'the revoked token still has a Revoke form');
    const dpop = await consolePage(p, x, '/console/tokens?binding=dpop', 'tokens ?binding=dpop')
      .then(() => tableRows(p, 'table#tokens', 'tokens ?binding=dpop'));
    assert(dpop.length >= 1, 'no dpop-bound token listed with ?binding=dpop');
    for (const d of dpop) assert(/dpop/i.test(d.text), `?binding=dpop lists "${d.text}"`);
    facts.tokens = { listed: rows.length, revoked_id: tokenId, row_after: same.text, dpop_listed: dpop.length };
  });

  // ------------------------------------------------------------ 7. keys
  await step('7. keys: rotate, then retire one of the previous keys', async () => {
    const read = async (what) => {
      await consolePage(p, x, '/console/keys', what);
      const rows = await tableRows(p, 'table#keys', what);
      return rows.map((r) => {
        assert(r.kid, `${what}: a row of table#keys has no data-kid: "${r.text}"`);
        const m = r.text.match(/\b(active|published|retired)\b/i);
        return { kid: r.kid, state: m ? m[1].toLowerCase() : null, text: r.text, links: r.links };
      });
    };
    const before = await read('keys');
    assert(before.length >= 1, 'no keys listed');
    for (const k of before) assert(k.state, `key ${k.kid}: no state in "${k.text}"`);
    const rotate = p.locator('form[action$="/console/keys/rotate"]');
    if ((await rotate.count()) !== 1) throw new Error(`keys: no POST form to /console/keys/rotate ${await seen(p)}`);
    const r = await submit(p, rotate, /rotate keys/i, 'Rotate keys');
    assert(r && r.status() < 400, `Rotate keys answered ${r?.status()} ${await seen(p)}`);
    const after = await read('keys after rotating');
    const fresh = after.filter((k) => !before.some((b) => b.kid === k.kid));
    assert(fresh.length >= 1, `no new kid after rotating: before ${JSON.stringify(before.map((k) => k.kid))}`);
    for (const b of before) {
      const a = after.find((k) => k.kid === b.kid);
      assert(a, `key ${b.kid} vanished on rotation`);
      if (b.state === 'active') assertEq(a.state, 'published', `state of the replaced key ${b.kid}`);
    }
    for (const k of fresh) assertEq(k.state, 'active', `state of the new key ${k.kid}`);
    // The oldest generation: a key listed before the rotation (all of them were made at once).
    const target = after.find((k) => before.some((b) => b.kid === k.kid) && k.state !== 'retired');
    assert(target, 'no previous key left to retire');
    const retirePath = `/console/keys/${encodeURIComponent(target.kid)}/retire`;
    assert(target.links.includes(retirePath), `key ${target.kid} has no Retire link to ${retirePath}: ${JSON.stringify(target.links)}`);
    const row = p.locator(`table#keys tr[data-kid="${target.kid}"]`);
    await clickLink(p, row, /retire/i, `key ${target.kid}`);
    assertEq(pathOf(p), retirePath, 'retire confirmation path');
    await checkLayout(p, 'retire confirmation');
    const form = p.locator(`form[action$="${retirePath}"]`);
    if ((await form.count()) !== 1) throw new Error(`retire confirmation: no POST form to ${retirePath} ${await seen(p)}`);
    const done = await submit(p, form, /retire key/i, 'Retire key');
    assert(done && done.status() < 400, `Retire key answered ${done?.status()} ${await seen(p)}`);
    const last = await read('keys after retiring');
    const k = last.find((y) => y.kid === target.kid);
    assert(!k || k.state === 'retired', `the retired key ${target.kid} is shown as ${k?.state}: "${k?.text}"`);
    assert(!k || !k.links.includes(retirePath), 'the retired key still has a Retire link');
    facts.keys = {
      before: before.map((y) => y.kid),
      after: after.map((y) => y.kid),
      new: fresh.map((y) => y.kid),
      retired: target.kid,
      retired_shown: k ? k.state : 'gone',
      final: last.map((y) => ({ kid: y.kid, state: y.state })),
    };
  });

  // ------------------------------------------------------------ 9. events
  await step('9. events: admin.change, details, binding.mismatch links', async () => {
    await consolePage(p, x, '/console/events', 'events');
    const all = await tableRows(p, 'table#events', 'events');
    assert(all.some((r) => r.text.includes('admin.change')), `no admin.change event listed ${await seen(p)}`);
    await consolePage(p, x, '/console/events?type=admin.change', 'events ?type=admin.change');
    const changes = await tableRows(p, 'table#events', 'events ?type=admin.change');
    assert(changes.length >= 1, 'no admin.change event with ?type=admin.change');
    for (const r of changes) assert(r.text.includes('admin.change'), `?type=admin.change lists "${r.text}"`);
    const details = p.locator('table#events details');
    if ((await details.count()) < 1) throw new Error(`events: no <details> ${await seen(p)}`);
    const closed = await details.evaluateAll((ds) => ds.findIndex((e) => !e.open));
    assert(closed >= 0, 'events: every <details> is open already');
    const d = details.nth(closed);
    await d.locator('summary').first().click();
    assertEq(await d.evaluate((e) => e.open), true, '<details> open after clicking its summary');
    const detail = squash(await d.innerText());
    assert(detail.length > 0, 'the opened <details> is empty');

    const mm = `/console/events?type=binding.mismatch&client_id=${encodeURIComponent(app.clientId)}`;
    await consolePage(p, x, mm, 'events ?type=binding.mismatch');
    const mismatches = await tableRows(p, 'table#events', 'events ?type=binding.mismatch');
    assert(mismatches.length >= 1, `no binding.mismatch event of the app (the test caused one at userinfo) ${await seen(p)}`);
    assert(mismatches[0].links.includes(app.path), `the binding.mismatch row does not link to ${app.path}: ${JSON.stringify(mismatches[0])}`);
    // Why the token was refused, in words: where, and which binding's proof was missing.
    assert(/refused at userinfo: a certificate-bound token was presented without its proof/.test(mismatches[0].text),
      `the binding.mismatch row does not say why the token was refused: ${mismatches[0].text}`);
    await consolePage(p, x, `/console/events?username=${encodeURIComponent(admin.username)}`, 'events ?username=');
    const mine = await tableRows(p, 'table#events', 'events ?username=');
    assert(mine.length >= 1, `no event of ${admin.username}`);
    facts.events = {
      listed: all.length,
      admin_changes: changes.length,
      details_excerpt: excerpt(detail, 200),
      binding_mismatch: mismatches.length,
      of_admin: mine.length,
    };
  });

  // ------------------------------------------------------------ 10. CSRF
  await step('10. CSRF: the edit form without (or with a forged) csrf is refused', async () => {
    const attempt = async (how, mutate) => {
      await consolePage(p, x, app.path, `app page (${how})`);
      const form = p.locator('form:has(fieldset#token-binding)');
      assertEq(await form.locator('input[name="csrf"]').count(), 1, 'csrf inputs in the edit form');
      await form.evaluate(mutate);
      const r = await submit(p, form, /save/i, `saving ${how}`, { loose: true });
      const text = squash(await p.locator('body').innerText());
      assertEq(r?.status(), 403, `saving ${how}: status ${await seen(p)}`);
      assert(text.includes('CSRF'), `saving ${how}: the 403 page does not say CSRF: "${excerpt(text)}"`);
      return { status: r.status(), says_csrf: true };
    };
    facts.csrf = {
      missing: await attempt('without csrf', (f) => f.querySelector('input[name="csrf"]').remove()),
      forged: await attempt('with a forged csrf', (f) => {
        f.querySelector('input[name="csrf"]').value = 'forged';
      }),
    };
  });

  // ------------------------------------------------------------ 11. screenshots
  await step('11. screenshots of each page, light; the overview dark', async () => {
    await p.emulateMedia({ colorScheme: 'light' });
    const pages = [
      ['01-overview', '/console'],
      ['02-apps', '/console/apps'],
      ['03-app-new', '/console/apps/new'],
      ['04-app-edit', app.path],
      ['05-users', '/console/users'],
      ['06-user', '/console/users/carol'],
      ['07-tokens', '/console/tokens'],
      ['08-keys', '/console/keys'],
      ['09-events', '/console/events'],
    ];
    for (const [name, at] of pages) {
      await consolePage(p, x, at, `screenshot ${name}`);
      await shot(p, cfg.shots, name, facts);
    }
    const bg = () => p.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await consolePage(p, x, '/console', 'overview (light)');
    const light = await bg();
    await p.emulateMedia({ colorScheme: 'dark' });
    await consolePage(p, x, '/console', 'overview (dark)');
    const dark = await bg();
    await shot(p, cfg.shots, '10-overview-dark', facts);
    await p.emulateMedia({ colorScheme: 'light' });
    facts.dark_mode = { light_background: light, dark_background: dark, differs: light !== dark };
    // A phone: the app page fits the width (no sideways scrolling of the page itself).
    await p.setViewportSize({ width: 390, height: 844 });
    await consolePage(p, x, app.path, 'app page on a phone');
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(overflow <= 1, `on a 390 px wide screen the app page is ${overflow} px too wide`);
    await shot(p, cfg.shots, '13-app-phone', facts);
    await p.setViewportSize({ width: 1280, height: 800 });
  });

  // ------------------------------------------------------------ 12. sign out
  await step('12. sign out: the SSO session ends, /console asks to sign in again', async () => {
    await consolePage(p, x, '/console', 'overview before signing out');
    const form = p.locator(`form[action$="${SIGNOUT}"]`);
    if ((await form.count()) !== 1) throw new Error(`no sign-out form ${await seen(p)}`);
    const r = await submit(p, form, /sign out/i, 'Sign out');
    const chain = await redirectChain(r);
    assert(r && r.status() === 200, `after Sign out: HTTP ${r?.status()} ${await seen(p)}`);
    const forms = await postForms(p);
    assert(!forms.some((f) => f.action === SIGNOUT), `the page after signing out still offers to sign out ${await seen(p)}`);
    const jar = await one.context.cookies();
    facts.signout = {
      landed: pathOf(p),
      chain,
      text: excerpt(await p.locator('body').innerText(), 160),
      console_cookie_left: jar.some((k) => k.name === 'tether_console'),
      sso_cookie_left: jar.some((k) => k.name === 'tether_session'),
    };
    await goto(p, `${base}/console`, 'GET /console after signing out');
    if (!isLoginPage(p, x.baseOrigin)) throw new Error(`GET /console after signing out did not ask to sign in ${await seen(p)}`);
    await loginForm(p, 'login page after signing out');
    facts.signout.login_required_after = true;
  });
  await one.context.close();

  // ------------------------------------------------------------ 13. viewer
  await step('13. viewer: sees the pages, no form that changes anything, POSTs refused', async () => {
    const two = await newContext(browser, 'viewer browser');
    const v = two.page;
    try {
      const s = await signIn(v, x, viewer, '/console/apps', 'viewer');
      assertEq(pathOf(v), '/console/apps', `the viewer lands on the page first asked for ${await seen(v)}`);
      await expectStatus(v, s.resp, 200, 'viewer: applications');
      await checkLayout(v, 'viewer: applications');
      const rows = await tableRows(v, 'table#apps', 'viewer: applications');
      assert(rows.some((r) => r.text.includes(APP_NAME)), `the viewer does not see ${APP_NAME}: ${JSON.stringify(rows)}`);
      await shot(v, cfg.shots, '11-viewer-apps', facts);

      const checked = {};
      for (const at of ['/console', '/console/apps', app.path, '/console/users', '/console/users/carol',
        '/console/tokens', '/console/keys', '/console/events']) {
        await consolePage(v, x, at, `viewer: ${at}`);
        const forms = (await postForms(v)).filter((f) => f.action !== SIGNOUT);
        assert(forms.length === 0, `viewer: ${at} has POST forms ${JSON.stringify(forms)} ${await seen(v)}`);
        for (const name of [/new application/i, /rotate/i, /new user/i]) {
          const n = (await v.getByRole('link', { name }).count()) + (await v.getByRole('button', { name }).count());
          assert(n === 0, `viewer: ${at} offers ${name} (${n} link(s)/button(s)) ${await seen(v)}`);
        }
        checked[at] = 'no forms';
      }
      // The viewer's own valid csrf, from the one form it has: sign-out.
      await consolePage(v, x, '/console/keys', 'viewer: keys');
      const keysBefore = (await tableRows(v, 'table#keys', 'viewer: keys')).map((r) => r.kid);
      const own = (await postForms(v)).find((f) => f.action === SIGNOUT)?.csrf?.value;
      assert(own, 'viewer: the sign-out form carries no csrf');
      const post = async (at, form) => {
        const r = await v.request.post(`${base}${at}`, { form, maxRedirects: 0, failOnStatusCode: false, timeout: STEP_TIMEOUT });
        const text = await r.text();
        return { status: r.status(), text: excerpt(text, 200) };
      };
      const fake = await post('/console/keys/rotate', { csrf: 'x' });
      assertEq(fake.status, 403, `viewer POST /console/keys/rotate with csrf=x (${fake.text}): status`);
      const real = await post('/console/keys/rotate', { csrf: own });
      assertEq(real.status, 403, `viewer POST /console/keys/rotate with its own csrf (${real.text}): status`);
      const edit = await post(app.path, {
        csrf: own, name: 'Hijacked', grant_types: 'client_credentials', token_type: 'opaque', binding: 'none', scopes: '',
        redirect_uris: '',
      });
      assertEq(edit.status, 403, `viewer POST ${app.path} with its own csrf (${edit.text}): status`);
      await consolePage(v, x, '/console/keys', 'viewer: keys after the refused POSTs');
      const keysAfter = (await tableRows(v, 'table#keys', 'viewer: keys again')).map((r) => r.kid);
      assertEq(JSON.stringify(keysAfter), JSON.stringify(keysBefore), 'keys after the viewer\'s refused rotation');
      await consolePage(v, x, app.path, 'viewer: app page');
      const appText = await v.locator('body').innerText();
      assert(appText.includes(app.clientId) && appText.includes(APP_NAME),
        `viewer: the app page does not show the app's name and client_id ${await seen(v)}`);
      facts.viewer = {
        landed: '/console/apps',
        pages_without_forms: Object.keys(checked),
        post_rotate_fake_csrf: fake.status,
        post_rotate_own_csrf: real.status,
        post_app_edit_own_csrf: edit.status,
        keys_unchanged: true,
      };
    } finally {
      await two.context.close();
    }
  });

  // ------------------------------------------------------------ 14. no role
  await step('14. a user without a role: 403 "no access", no data', async () => {
    const three = await newContext(browser, 'no-role browser');
    const n = three.page;
    try {
      const s = await signIn(n, x, none, '/console', 'no-role user');
      const text = await n.locator('body').innerText();
      const html = await n.content();
      await shot(n, cfg.shots, '12-no-access', facts);
      await expectStatus(n, s.resp, 403, 'no-role user: /console after signing in');
      assert(/no access/i.test(text), `no-role user: the 403 page does not say "no access": "${excerpt(text)}"`);
      assert(!html.includes(app.clientId), 'no-role user: the 403 page shows the client_id of the app');
      assert(!html.includes(APP_NAME), 'no-role user: the 403 page shows the name of the app');
      const apps = await goto(n, `${base}/console/apps`, 'no-role user: /console/apps');
      const appsHtml = await n.content();
      assertEq(apps?.status(), 403, 'no-role user: /console/apps status');
      assert(!appsHtml.includes(app.clientId), 'no-role user: /console/apps shows the client_id of the app');
      const rot = await n.request.post(`${base}/console/keys/rotate`, {
        form: { csrf: 'x' }, maxRedirects: 0, failOnStatusCode: false, timeout: STEP_TIMEOUT,
      });
      // 403; or, should the console keep no session for a user without a role, a 303 to sign in.
      const loc = rot.headers().location ?? '';
      assert(
        rot.status() === 403 || (rot.status() === 303 && /^\/console(\/signin)?$|\/authorize$/.test(new URL(loc, base).pathname)),
        `no-role user: POST /console/keys/rotate answered ${rot.status()} ${loc}`,
      );
      facts.nobody = {
        status: s.resp.status(),
        says_no_access: true,
        shows_client_id: false,
        apps_status: apps.status(),
        post_rotate_status: rot.status(),
      };
    } finally {
      await three.context.close();
    }
  });
}

// ---------------------------------------------------------------- main

await main(loadConfig, run, OVERALL_TIMEOUT);

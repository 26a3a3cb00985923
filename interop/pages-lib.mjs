// What the two headless-Chromium scripts (browser.mjs: the sign-in, consent,
// logout and device pages; console.mjs: the web console) share: the report on
// stdout, progress on stderr, assertions, named steps, what a page shows for
// error messages, navigation with a timeout, the sign-in form, and the main
// runner with its overall watchdog.
//
// Each script calls configure({ tag, stepTimeout }) once, before anything else.

let tag = 'pages';
let stepTimeout = 15_000;

export function configure(opts) {
  tag = opts.tag;
  stepTimeout = opts.stepTimeout;
}

// ---------------------------------------------------------------- output

let finished = false;
export function finish(result) {
  if (finished) return;
  finished = true;
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

export function log(msg) {
  process.stderr.write(`${tag}: ${msg}\n`);
}

// ---------------------------------------------------------------- helpers

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

export function assertEq(actual, expected, what) {
  if (actual !== expected) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

export function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise.finally(() => clearTimeout(t)),
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms);
    }),
  ]);
}

export const squash = (s) => String(s ?? '').replace(/\s+/g, ' ').trim();
export const excerpt = (s, n = 300) => {
  const t = squash(s);
  return t.length > n ? `${t.slice(0, n)}...` : t;
};

let currentStep = '(none)';
export async function step(name, fn) {
  currentStep = name;
  log(`step ${name}`);
  const started = Date.now();
  try {
    const r = await fn();
    log(`step ${name}: ok (${Date.now() - started} ms)`);
    return r;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`step "${name}" failed: ${msg}`, { cause: err });
  }
}

// ---------------------------------------------------------------- pages

// What the page shows, for error messages.
export async function seen(page) {
  try {
    const url = page.url();
    const text = await withTimeout(
      page.evaluate(() => (document.body ? document.body.innerText : document.documentElement.outerHTML)),
      3000,
      'reading the page',
    );
    return `[page ${url}: "${excerpt(text, 400)}"${browserNotes(page)}]`;
  } catch (e) {
    return `[page ${page.url()}: unreadable: ${e.message}${browserNotes(page)}]`;
  }
}

// Console errors (e.g. Content-Security-Policy violations) and failed requests
// the page saw since the last call: they explain a navigation that never came.
const notes = new WeakMap();
export function watchPage(page) {
  const list = [];
  notes.set(page, list);
  page.on('console', (m) => {
    if (m.type() === 'error') list.push(`console error: ${m.text()}`);
  });
  page.on('requestfailed', (r) => list.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on('crash', () => list.push('the page crashed'));
}

// A note for the page's list (shown with the next error about it).
export function notePage(page, text) {
  notes.get(page)?.push(text);
}

function browserNotes(page) {
  const list = notes.get(page);
  if (!list?.length) return '';
  const s = list.splice(0).join('; ');
  const hint = /Content Security Policy directive: "form-action/.test(s)
    ? ' (Chromium applies CSP form-action to the redirects that follow a form submission: a page whose form ' +
      'ends in a redirect to the client needs the client origin in form-action, or no form-action)'
    : '';
  return `; the browser reported: ${s}${hint}`;
}

// Run `action` (a click) and wait for the navigation it causes; returns the
// final response (after redirects).
export async function navigate(page, action, what) {
  try {
    const [resp] = await Promise.all([
      page.waitForNavigation({ timeout: stepTimeout, waitUntil: 'load' }),
      action(),
    ]);
    return resp;
  } catch (e) {
    throw new Error(`${what}: ${e.message.split('\n')[0]} ${await seen(page)}`);
  }
}

export async function goto(page, url, what) {
  try {
    return await page.goto(url, { timeout: stepTimeout, waitUntil: 'load' });
  } catch (e) {
    throw new Error(`${what}: ${e.message.split('\n')[0]} ${await seen(page)}`);
  }
}

// The sign-in page's form: one POST form with username and password.
export async function loginForm(page, what) {
  const forms = await page.locator('form').count();
  const user = await page.locator('form input[name="username"]').count();
  const pass = await page.locator('form input[name="password"][type="password"]').count();
  if (forms !== 1 || user !== 1 || pass !== 1) {
    throw new Error(
      `${what}: expected one form with inputs username and password, found ${forms} form(s), ` +
        `${user} username and ${pass} password input(s) ${await seen(page)}`,
    );
  }
  const method = (await page.locator('form').getAttribute('method')) ?? '';
  assertEq(method.toLowerCase(), 'post', `${what}: form method`);
}

export async function fillAndSubmitLogin(page, username, password, what) {
  await loginForm(page, what);
  await page.fill('form input[name="username"]', username);
  await page.fill('form input[name="password"]', password);
  return navigate(page, () => page.click('form button[type="submit"]'), `${what}: submitting the sign-in form`);
}

// ---------------------------------------------------------------- main

// Load the config, run, and write the report: {"ok":true,"facts":{...}} and exit 0, or
// {"ok":false,"error":...,"facts":{...}} and exit 1; the whole run within `overallTimeout` ms.
export async function main(loadConfig, run, overallTimeout) {
  const facts = {};
  const watchdog = setTimeout(() => {
    finish({ ok: false, error: `the whole run took longer than ${overallTimeout / 1000} s (last step: ${currentStep})`, facts });
    process.exit(1);
  }, overallTimeout);
  try {
    const cfg = loadConfig();
    await run(cfg, facts);
    finish({ ok: true, facts });
    clearTimeout(watchdog);
    process.exit(0);
  } catch (err) {
    finish({ ok: false, error: err instanceof Error ? err.message : String(err), facts });
    clearTimeout(watchdog);
    process.exit(1);
  }
}

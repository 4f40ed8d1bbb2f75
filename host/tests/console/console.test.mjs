// Real-browser test of the delivery console, driven by a Rust integration test over a line protocol:
//   stdout `ready`            logged in (a wrong token was refused first), live stream connected
//   stdin  `sent`             the test's XMPP client has sent a message with body $MESSAGE_BODY
//   stdout `opened <id>`      its row came in live; its detail shows delivered, request, answer, trail
//   stdout `redelivered <id>` redelivered from the page; the new delivery came in live, links back
//   stdout `error: <message>` (also on stderr) on any failure; exit 1. Exit 0 on success.
// Env: CONSOLE_URL (http://127.0.0.1:PORT/console), API_TOKEN, MESSAGE_BODY, CHROMIUM (optional).
// Writes nothing to disk (no screenshots or traces). Page console output goes to stderr.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { accessSync, constants } from 'node:fs';

const GLOBAL_TIMEOUT_MS = 60_000;
const LIVE_TIMEOUT_MS = 20_000;
const NOT_KEPT = 'not kept';

let browser = null;
let failing = false;

function log(msg) {
  process.stderr.write(`console.test: ${msg}\n`);
}

function say(line) {
  process.stdout.write(line + '\n');
}

async function fail(msg) {
  if (failing) return;
  failing = true;
  const one = String(msg).split('\n')[0];
  say(`error: ${one}`);
  process.stderr.write(`error: ${msg}\n`);
  if (browser) await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  process.exit(1);
}

const globalTimer = setTimeout(() => fail(`global timeout (${GLOBAL_TIMEOUT_MS / 1000} s)`), GLOBAL_TIMEOUT_MS);

// ---- stdin lines ------------------------------------------------------------------------
const lines = [];
const waiters = [];
let stdinClosed = false;
const rl = createInterface({ input: process.stdin });
rl.on('line', (l) => {
  const w = waiters.shift();
  if (w) w.resolve(l.trim());
  else lines.push(l.trim());
});
rl.on('close', () => {
  stdinClosed = true;
  for (const w of waiters.splice(0)) w.reject(new Error('stdin closed'));
});

function nextLine() {
  if (lines.length) return Promise.resolve(lines.shift());
  if (stdinClosed) return Promise.reject(new Error('stdin closed'));
  return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
}

async function waitLine(want) {
  for (;;) {
    const l = await nextLine().catch((e) => { throw new Error(`waiting for "${want}" on stdin: ${e.message}`); });
    if (l === want) return;
    log(`ignoring stdin line ${JSON.stringify(l)} (waiting for "${want}")`);
  }
}

// ---- page helpers -----------------------------------------------------------------------
const tid = (id) => `[data-testid="${id}"]`;

// Waits until the visible element `testid` has a text that (trimmed) is non-empty, is none of
// `not`, starts with none of `notPrefix`, equals `equals` (if given) and includes one of `anyOf`
// (if given). Data only: the page's CSP forbids eval, so no predicates as code.
async function waitText(page, testid, want, what, timeout = LIVE_TIMEOUT_MS) {
  try {
    await page.waitForFunction(
      ({ sel, want }) => {
        const e = document.querySelector(sel);
        if (!e || e.offsetParent === null) return false;
        const t = (e.textContent || '').trim();
        if (!t) return false;
        if (want.equals != null && t !== want.equals) return false;
        if (want.anyOf && !want.anyOf.some((x) => t.includes(x))) return false;
        if (want.not && want.not.includes(t)) return false;
        if (want.notPrefix && want.notPrefix.some((x) => t.startsWith(x))) return false;
        return true;
      },
      { sel: tid(testid), want },
      { timeout },
    );
  } catch (e) {
    const now = await page.locator(tid(testid)).first().textContent({ timeout: 1000 }).catch(() => null);
    throw new Error(`${what} (${testid} is ${now === null ? 'missing' : JSON.stringify(now.slice(0, 300))})`);
  }
}

async function rowIds(page) {
  return page.$$eval(tid('delivery-row'), (els) => els.map((e) => e.dataset.id));
}

async function openRow(page, id) {
  await page.locator(`${tid('delivery-row')}[data-id="${id}"]`).click();
  await page.waitForFunction(
    ({ sel, id }) => { const d = document.querySelector(sel); return d && d.offsetParent !== null && d.dataset.id === id; },
    { sel: tid('detail'), id },
    { timeout: 10_000 },
  ).catch(() => { throw new Error(`the detail of #${id} did not open`); });
}

async function main() {
  const url = process.env.CONSOLE_URL;
  const token = process.env.API_TOKEN;
  const body = process.env.MESSAGE_BODY;
  if (!url || !token || !body) throw new Error('CONSOLE_URL, API_TOKEN and MESSAGE_BODY must be set');

  const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
  // checked first: a failed launch leaves Playwright's empty temp dirs behind
  try { accessSync(executablePath, constants.X_OK); } catch { throw new Error(`no Chromium at ${executablePath} (set CHROMIUM)`); }
  browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox'],
    headless: true,
  });
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('console', (m) => {
    const text = m.text();
    if (m.type() === 'error' || m.type() === 'warning') process.stderr.write(`[page console.${m.type()}] ${text}\n`);
    if (text.startsWith('CSP violation') || text.includes('Content Security Policy')) fail(`page: ${text}`);
  });
  page.on('pageerror', (e) => {
    process.stderr.write(`[page exception] ${e.stack || e.message}\n`);
    fail(`page error: ${e.message}`);
  });
  // Injected by the browser tooling, so not subject to the page's CSP itself.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile || '?'}:${e.lineNumber}`);
    });
  });

  // 1. login: wrong token first, then the right one; wait for the live stream
  const res = await page.goto(url, { waitUntil: 'load' });
  if (!res || !res.ok()) throw new Error(`GET ${url}: HTTP ${res ? res.status() : '?'}`);
  const csp = res.headers()['content-security-policy'] || '';
  if (!csp.includes("default-src 'self'")) throw new Error(`GET ${url}: no "default-src 'self'" CSP (got ${JSON.stringify(csp)})`);
  const title = await page.title();
  if (!title.includes('stanzahook')) throw new Error(`unexpected page title ${JSON.stringify(title)}`);

  const tokenInput = page.getByTestId('login-token');
  await tokenInput.waitFor({ state: 'visible' }).catch(() => { throw new Error('the login form did not show'); });
  await page.getByTestId('login-submit').waitFor({ state: 'visible' });
  await tokenInput.fill('wrong-token');
  await page.getByTestId('login-submit').click();
  await waitText(page, 'login-error', {}, 'a wrong token showed no login error', 10_000);
  log(`wrong token refused: ${(await page.getByTestId('login-error').textContent()).trim()}`);

  await tokenInput.fill(token);
  await page.getByTestId('login-submit').click();
  try {
    await waitText(page, 'live-status', { equals: 'live' }, 'the live stream did not connect', 15_000);
  } catch (e) {
    const err = page.getByTestId('login-error');
    if (await err.isVisible()) throw new Error(`login with API_TOKEN failed: ${(await err.textContent()).trim()}`);
    throw e;
  }
  if (await page.getByTestId('login-token').isVisible()) throw new Error('the login form is still visible after login');
  if (page.url().includes(token)) throw new Error('the token is in the URL');
  const known = await rowIds(page);
  log(`logged in, live; ${known.length} rows listed`);
  say('ready');

  // 2. a message comes in live
  await waitLine('sent');
  const first = await page.waitForFunction(
    ({ sel, known }) => {
      const e = [...document.querySelectorAll(sel)].find((r) => r.dataset.kind === 'message' && !known.includes(r.dataset.id));
      return e ? e.dataset.id : null;
    },
    { sel: tid('delivery-row'), known },
    { timeout: LIVE_TIMEOUT_MS },
  ).then((h) => h.jsonValue()).catch(() => { throw new Error(`no new message row came in live within ${LIVE_TIMEOUT_MS / 1000} s`); });
  log(`row #${first} came in live`);
  await openRow(page, first);
  await waitText(page, 'detail-status', { anyOf: ['delivered'] }, `delivery #${first} did not show as delivered`);
  const escaped = JSON.stringify(body).slice(1, -1);
  await waitText(page, 'request', { anyOf: [body, escaped] },
    `the request of #${first} does not contain MESSAGE_BODY`, 5000);
  await waitText(page, 'answer', { not: ['no answer'], notPrefix: [NOT_KEPT] },
    `the answer of #${first} is empty`, 5000);
  await page.getByTestId('filter-trail').waitFor({ state: 'visible', timeout: 5000 })
    .catch(() => { throw new Error('no filter trail in the detail'); });
  say(`opened ${first}`);

  // 3. redeliver it from the page; the new delivery comes in live and links back
  await page.waitForFunction((sel) => { const b = document.querySelector(sel); return b && !b.disabled; }, tid('redeliver'), { timeout: 5000 })
    .catch(() => { throw new Error(`the redeliver button of #${first} stays disabled`); });
  await page.getByTestId('redeliver').click();
  const outcome = await page.waitForFunction(
    (sel) => {
      const r = document.querySelector(sel);
      if (!r) return null;
      if (r.dataset.newId) return { id: r.dataset.newId, text: r.textContent };
      if (r.classList.contains('error-text') && r.textContent.trim()) return { error: r.textContent.trim() };
      return null;
    },
    tid('redeliver-result'),
    { timeout: 10_000 },
  ).then((h) => h.jsonValue()).catch(() => { throw new Error('redeliver showed no result'); });
  if (outcome.error) throw new Error(`redeliver failed: ${outcome.error}`);
  const second = outcome.id;
  if (!outcome.text.includes(`#${second}`)) throw new Error(`redeliver-result does not show #${second}: ${JSON.stringify(outcome.text)}`);
  log(`redelivering #${first} as #${second}`);
  await page.locator(`${tid('delivery-row')}[data-id="${second}"]`).waitFor({ state: 'visible', timeout: LIVE_TIMEOUT_MS })
    .catch(() => { throw new Error(`row #${second} did not come in live within ${LIVE_TIMEOUT_MS / 1000} s`); });
  await openRow(page, second);
  await page.waitForFunction(
    ({ sel, text }) => (document.querySelector(sel)?.textContent || '').includes(text),
    { sel: tid('detail'), text: `redelivery of #${first}` },
    { timeout: 5000 },
  ).catch(() => { throw new Error(`the detail of #${second} does not say "redelivery of #${first}"`); });
  say(`redelivered ${second}`);

  // 4. done
  await browser.close();
  browser = null;
}

main().then(
  () => { clearTimeout(globalTimer); rl.close(); process.exit(0); },
  (e) => fail(e && e.message ? e.message : String(e)),
);

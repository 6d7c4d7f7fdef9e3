// Shared helpers of the browser tests: the browser, contexts, screenshots, polling assertions
// and the sign-up / sign-in / order steps every test file uses.
//
// playwright-core has no `expect`, so waiting assertions are built from `eventually`, which
// retries a block of node:assert checks until it passes or its time runs out.

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';

/** Reads a required environment variable (scripts/e2e sets them all). */
function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set; run the suite with scripts/e2e`);
  return value;
}

export const BASE_URL = env('BASE_URL').replace(/\/+$/, '');
export const ADMIN = { username: env('ADMIN_USERNAME'), password: env('ADMIN_PASSWORD') };
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** The password of every customer the tests create: long and not guessable. */
export const CUSTOMER_PASSWORD = 'Maple-Lantern-42-Orbit';

const SCREENSHOTS = fileURLToPath(new URL('../docs/screenshots/', import.meta.url));

/** Starts headless Chromium (no sandbox: CI runs as root). */
export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/**
 * A new browser context (its own cookies) and a page in it.
 * `clientIp` sends that address as X-Forwarded-For, which the test server believes from
 * loopback, so a test can trip per-address limits without blocking the other tests.
 */
export async function newPage(browser, { viewport = DESKTOP, clientIp, storageState } = {}) {
  const context = await browser.newContext({
    baseURL: BASE_URL,
    viewport,
    locale: 'en-US',
    storageState,
    extraHTTPHeaders: clientIp ? { 'X-Forwarded-For': clientIp } : undefined,
  });
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(15_000);
  const page = await context.newPage();
  // Script errors and Content-Security-Policy violations: every page must be free of both.
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`script error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource: the server responded with a status of (40[134]|409|422|429)/.test(m.text())) {
      page.problems.push(`console error: ${m.text()}`);
    }
  });
  return { context, page };
}

/** Fails on any script error or CSP violation the page reported since it was opened. */
export function assertNoProblems(page) {
  assert.deepEqual(page.problems, [], 'the page reported script errors or CSP violations');
}

/** Saves a full-page PNG of the current page as docs/screenshots/<name>.png. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: `${SCREENSHOTS}${name}.png`, fullPage: true });
}

/** A username unique to this run: prefix + 6 random digits. */
export function uniqueName(prefix = 'cust') {
  return prefix + String(randomInt(0, 1_000_000)).padStart(6, '0');
}

/** Retries `fn` (which throws while its checks fail) until it passes or `timeout` ms pass. */
export async function eventually(fn, { timeout = 5_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() >= deadline) throw e;
    }
    await sleep(interval);
  }
}

/** The text of every element `locator` matches, right now (no waiting). */
export function texts(locator) {
  return locator.evaluateAll((els) => els.map((e) => e.textContent.replace(/\s+/g, ' ').trim()));
}

/** Waits until the single element `locator` matches has text matching `expected` (string: exact). */
export async function expectText(locator, expected, opts) {
  await eventually(async () => {
    const found = await texts(locator);
    assert.equal(found.length, 1, `expected one element for ${locator}, found ${found.length}`);
    if (expected instanceof RegExp) assert.match(found[0], expected);
    else assert.equal(found[0], expected);
  }, opts);
  return (await texts(locator))[0];
}

/** Waits until `locator` matches exactly `n` elements. */
export async function expectCount(locator, n, opts) {
  await eventually(async () => assert.equal(await locator.count(), n, `count of ${locator}`), opts);
}

/** Waits for a flash message containing `text`; returns its locator. */
export async function expectFlash(page, text, opts) {
  const flash = page.locator('div.flash[role="status"]').filter({ hasText: text });
  await expectCount(flash, 1, opts);
  return flash;
}

/** Asserts the document is English and its h1 matches `heading` (string: exact). */
export async function expectPage(page, heading, opts) {
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  return expectText(page.getByRole('heading', { level: 1 }), heading, opts);
}

/**
 * Marks the current document so `assertNoReload` can tell that a later check still sees the
 * same document (an HTMX swap or an SSE update, not a navigation).
 */
export async function markDocument(page) {
  await page.evaluate(() => {
    window.__e2eMark = 'same-document';
  });
}

export async function assertNoReload(page) {
  assert.equal(
    await page.evaluate(() => window.__e2eMark),
    'same-document',
    'the page was reloaded or navigated away',
  );
}

/** The nav's link named `name` (exact). */
export function navLink(page, name) {
  return page.getByRole('navigation').getByRole('link', { name, exact: true });
}

/** Creates an account through /register and checks the redirect to /login with its flash. */
export async function register(page, { username, password = CUSTOMER_PASSWORD, email } = {}) {
  await page.goto('/register');
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  if (email) await page.getByLabel('Email (optional)').fill(email);
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.waitForURL((url) => url.pathname === '/login');
  await expectFlash(page, 'Account created. Sign in with your new password.');
}

/** Fills and sends the sign-in form (from /login unless `navigate` is false). */
export async function submitLogin(page, username, password, { navigate = true } = {}) {
  if (navigate) await page.goto('/login');
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Signs in and waits for the start page: /orders for customers, /dashboard for shop admins. */
export async function signIn(page, username, password = CUSTOMER_PASSWORD) {
  await submitLogin(page, username, password);
  await page.waitForURL((url) => url.pathname === '/orders' || url.pathname === '/dashboard');
  await expectPage(page, new URL(page.url()).pathname === '/dashboard' ? 'Dashboard' : 'My orders');
}

/** Signs out with the nav's button and checks the flash on /login. */
export async function signOut(page) {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL((url) => url.pathname === '/login');
  await expectFlash(page, 'You have signed out.');
}

/**
 * Sets input values without input events, so no as-you-type check runs: whatever errors show
 * afterwards come from submitting.
 */
export async function setValues(page, values) {
  for (const [label, value] of Object.entries(values)) {
    await page.getByLabel(label, { exact: true }).evaluate((el, v) => {
      el.value = v;
    }, value);
  }
}

/**
 * Clicks a form's submit button with the browser's own checks off (so the server's answer is
 * what gets tested) and waits for the answer to a POST the click started, to any address the
 * form may send to (its hx-post, its action, ...): HTMX or plain.
 */
export async function submitForm(page, button) {
  const paths = await button.evaluate((b) => {
    b.form.noValidate = true;
    const targets = [
      b.getAttribute('hx-post'),
      b.getAttribute('formaction'),
      b.form.getAttribute('hx-post'),
      b.form.getAttribute('action'),
      location.pathname,
    ];
    return targets.filter(Boolean).map((t) => new URL(t, location.href).pathname);
  });
  const clicked = Date.now();
  const answered = page.waitForResponse(
    (r) =>
      r.request().method() === 'POST' &&
      paths.includes(new URL(r.url()).pathname) &&
      r.request().timing().startTime >= clicked - 50,
  );
  await button.click();
  return answered;
}

/** A new customer account, signed in on a fresh context; returns its name too. */
export async function newCustomer(browser, opts) {
  const username = uniqueName();
  const { context, page } = await newPage(browser, opts);
  await register(page, { username });
  await signIn(page, username);
  return { username, context, page };
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/**
 * Places an order through /orders/new (HTMX, no reload) and returns its id, read from the
 * success flash's "View order" link. Leaves the page on /orders/new showing the flash.
 */
export async function placeOrder(page, { item, quantity = 1, notes } = {}) {
  if (new URL(page.url()).pathname !== '/orders/new') await page.goto('/orders/new');
  await expectPage(page, 'New order');
  await markDocument(page);
  await page.getByLabel('Item').fill(item);
  await page.getByLabel('Quantity').fill(String(quantity));
  if (notes !== undefined) await page.getByLabel('Notes').fill(notes);
  await page.getByRole('button', { name: 'Place order' }).click();
  const flash = await expectFlash(page, 'Order placed.');
  await assertNoReload(page);
  const href = await flash.getByRole('link', { name: 'View order' }).getAttribute('href');
  const id = href?.match(UUID)?.[0];
  assert.ok(id, `"View order" should link to /orders/<uuid>, got ${href}`);
  assert.equal(new URL(href, BASE_URL).pathname, `/orders/${id}`);
  return id;
}

/** The number in the /orders status tab `status` (all, pending, approved, ...). */
export async function tabCount(page, status) {
  const text = await expectText(page.locator(`a.tab[data-status="${status}"] .count`), /^\d+$/);
  return Number(text);
}

/** The row of order `id` in the table `table` (#orders or #admin-orders). */
export function orderRow(page, id, table = '#orders') {
  return page.locator(`${table} tr[data-order-id="${id}"]`);
}

/**
 * Types a username into the dashboard's search and waits for the (debounced) search's answer,
 * so no later swap of the table races what the test does next.
 */
export async function searchDashboard(page, username) {
  const searched = page.waitForResponse(
    (r) => r.url().includes(username) || (r.request().postData() ?? '').includes(username),
  );
  await page.getByLabel('Search by username').fill(username);
  await searched;
}

/** Waits until the row's status cell says `status` (PENDING, APPROVED, ...). */
export async function expectStatus(row, status, opts) {
  await expectCount(row.locator(`td.status[data-status="${status}"]`), 1, opts);
}

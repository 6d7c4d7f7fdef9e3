// Security behaviour a browser can see: the sign-in rate limit, CSRF refusal, escaping of
// user input, security headers, and the 404 page.

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BASE_URL,
  CUSTOMER_PASSWORD,
  expectPage,
  expectText,
  launch,
  newCustomer,
  newPage,
  orderRow,
  placeOrder,
  register,
  screenshot,
  submitForm,
  tabCount,
  uniqueName,
} from './lib.mjs';

let browser;
let customer; // one signed-in customer for the tests that need one
before(async () => {
  browser = await launch();
  customer = await newCustomer(browser);
});
after(async () => {
  await browser?.close();
});

test('three bad sign-ins for one username show the rate-limit message with seconds left', async () => {
  const username = uniqueName();
  const { page: signup } = await newPage(browser);
  await register(signup, { username });

  // The per-address limit counts too: a documentation address of its own (TEST-NET-3, only
  // ever a header value) keeps this test from locking the other tests, all on 127.0.0.1, out.
  const { page } = await newPage(browser, { clientIp: `203.0.113.${randomInt(1, 255)}` });
  const error = page.locator('#login-error[role="alert"]');
  const attempt = async (password) => {
    await page.goto('/login');
    await page.getByLabel('Username', { exact: true }).fill(username);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await submitForm(page, page.getByRole('button', { name: 'Sign in' }));
  };

  for (const n of [1, 2]) {
    await attempt(`Wrong-Password-${n}`);
    await expectText(error, 'Invalid username or password.');
  }
  // The third failure may already answer with the limit.
  await attempt('Wrong-Password-3');
  await expectText(error, /^(Invalid username or password\.|Too many failed sign-in attempts\..*)$/);

  // Now even the right password is refused, with the time left.
  await attempt(CUSTOMER_PASSWORD);
  const message = await expectText(error, /^Too many failed sign-in attempts\. Try again in \d+ seconds\.$/);
  const seconds = Number(message.match(/\d+/)[0]);
  assert.ok(seconds >= 1 && seconds <= 60, `${seconds} seconds left (window 60 s)`);
  assert.equal(new URL(page.url()).pathname, '/login');
});

test('a POST without the CSRF token is refused with a 403 page and creates nothing', async () => {
  const { page } = customer;
  await page.goto('/orders');
  const ordersBefore = await tabCount(page, 'all');

  // page.request shares the signed-in context's cookies but sends no token.
  const res = await page.request.post(`${BASE_URL}/orders`, {
    form: { item_name: 'x', quantity: '1' },
    maxRedirects: 0,
  });
  assert.equal(res.status(), 403);
  assert.match(res.headers()['content-type'] ?? '', /^text\/html/);
  assert.match(await res.text(), /<h1[^>]*>\s*Request refused\s*<\/h1>/);

  await page.reload();
  assert.equal(await tabCount(page, 'all'), ordersBefore, 'no order was created');
});

test('markup in an order is shown as text and never runs', async () => {
  const { page } = customer;
  const item = '<img src=x onerror="window.__xss=1">';
  const notes = '<script>window.__xss=1</script>';
  const id = await placeOrder(page, { item, notes });

  for (const path of [`/orders/${id}`, '/orders']) {
    await page.goto(path);
    await sleep(300); // an injected <img> would fail to load and run its onerror by now
    const body = await page.locator('body').innerText();
    assert.ok(body.includes(item), `${path} shows the item as literal text`);
    if (path !== '/orders') assert.ok(body.includes(notes), `${path} shows the notes as literal text`);
    assert.equal(await page.locator('img[src="x"]').count(), 0, `${path} has no injected <img>`);
    assert.equal(await page.evaluate(() => typeof window.__xss), 'undefined', `${path} ran no injected script`);
  }
  assert.equal(await orderRow(page, id).count(), 1);
});

/** Splits a Content-Security-Policy into { directive: [values] }. */
function parseCsp(csp) {
  return Object.fromEntries(
    csp
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter(([name]) => name)
      .map(([name, ...values]) => [name.toLowerCase(), values]),
  );
}

test('pages send a strict content security policy, nosniff and no framing', async () => {
  const anonymous = await newPage(browser);
  for (const [page, path] of [
    [anonymous.page, '/login'],
    [customer.page, '/orders'],
  ]) {
    const res = await page.goto(path);
    const headers = res.headers();
    const csp = headers['content-security-policy'];
    assert.ok(csp, `${path} has a content-security-policy`);
    const directives = parseCsp(csp);
    const scriptSrc = directives['script-src'] ?? directives['default-src'];
    assert.ok(scriptSrc, `${path}: the CSP restricts scripts (script-src or default-src): ${csp}`);
    assert.ok(!scriptSrc.includes("'unsafe-inline'"), `${path}: no 'unsafe-inline' for scripts: ${csp}`);
    assert.deepEqual(directives['frame-ancestors'], ["'none'"], `${path}: frame-ancestors 'none': ${csp}`);
    assert.equal(headers['x-content-type-options'], 'nosniff', `${path}: x-content-type-options`);
  }
});

test('an unknown page answers 404 with an HTML page', async () => {
  const { page } = customer;
  const res = await page.goto('/no-such-page');
  assert.equal(res.status(), 404);
  assert.match(res.headers()['content-type'] ?? '', /^text\/html/);
  await expectPage(page, 'Page not found');
  await screenshot(page, '404');
});

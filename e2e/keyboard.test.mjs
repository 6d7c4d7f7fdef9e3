// Keyboard-only use: signing in and placing an order with Tab, typing and Enter alone, with a
// visible focus ring on every control reached, and labelled inputs throughout.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  BASE_URL,
  CUSTOMER_PASSWORD,
  expectFlash,
  expectPage,
  launch,
  newPage,
  register,
  uniqueName,
} from './lib.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** The focused element's id (or tag) and whether it shows a focus indicator. */
async function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    const s = getComputedStyle(el);
    const ring = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
    return { id: el.id || el.tagName.toLowerCase(), text: (el.textContent || '').trim(), ring };
  });
}

/** Presses Tab until the focused element matches, checking the focus ring on the way. */
async function tabTo(page, match, limit = 25) {
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press('Tab');
    const f = await focused(page);
    assert.ok(f.ring, `no visible focus on ${f.id} "${f.text}"`);
    if (match(f)) return f;
  }
  assert.fail('the control was not reached with Tab');
}

test('signing in and placing an order work with the keyboard alone', async () => {
  const username = uniqueName('key');
  const { page: signup } = await newPage(browser);
  await register(signup, { username });

  const { page } = await newPage(browser);
  await page.goto(`${BASE_URL}/login`);
  // The username field has focus on arrival.
  assert.equal((await focused(page)).id, 'username');
  await page.keyboard.type(username);
  await tabTo(page, (f) => f.id === 'password');
  await page.keyboard.type(CUSTOMER_PASSWORD);
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.pathname === '/orders');
  await expectPage(page, 'My orders');

  // The skip link is the first stop and leads past the navigation.
  await page.keyboard.press('Tab');
  const skip = await focused(page);
  assert.equal(skip.text, 'Skip to content');

  await tabTo(page, (f) => f.text === 'New order');
  await page.keyboard.press('Enter');
  await page.waitForURL((url) => url.pathname === '/orders/new');
  assert.equal((await focused(page)).id, 'item_name');
  await page.keyboard.type('Linen tote');
  await tabTo(page, (f) => f.id === 'quantity');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('3');
  await tabTo(page, (f) => f.text === 'Place order');
  await page.keyboard.press('Enter');
  await expectFlash(page, 'Order placed.');
  // Focus returns to the first field for the next order.
  assert.equal((await focused(page)).id, 'item_name');

  // Every input and textarea on the page has a label.
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
      .filter((el) => !el.labels || el.labels.length === 0)
      .map((el) => el.id || el.name),
  );
  assert.deepEqual(unlabelled, []);
});

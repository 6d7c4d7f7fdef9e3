// The shop admin's dashboard: rejecting with a reason, and the dashboard being off limits to
// customers.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ADMIN,
  assertNoReload,
  expectCount,
  expectPage,
  expectStatus,
  launch,
  markDocument,
  navLink,
  newCustomer,
  newPage,
  orderRow,
  placeOrder,
  screenshot,
  searchDashboard,
  signIn,
} from './lib.mjs';

let browser;
let customer; // a signed-in customer with one pending order
let orderId;
before(async () => {
  browser = await launch();
  customer = await newCustomer(browser);
  orderId = await placeOrder(customer.page, { item: 'Linen tablecloth', quantity: 3 });
});
after(async () => {
  await browser?.close();
});

test('rejecting with a reason from the prompt updates the row in place', async () => {
  const { page } = await newPage(browser);
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/dashboard');
  await expectPage(page, 'Dashboard');
  await markDocument(page);

  await searchDashboard(page, customer.username);
  const row = orderRow(page, orderId, '#admin-orders');
  await expectCount(row, 1);
  await expectCount(row.locator('td.customer', { hasText: customer.username }), 1);
  await expectStatus(row, 'PENDING');

  // "Reject" asks for an optional reason in a browser prompt.
  let asked;
  page.once('dialog', async (dialog) => {
    asked = dialog.type();
    await dialog.accept('Out of stock until March');
  });
  await row.getByRole('button', { name: 'Reject' }).click();
  await expectStatus(row, 'REJECTED');
  assert.equal(asked, 'prompt', 'Reject opened a prompt');
  await assertNoReload(page);
});

test('a customer sees no Dashboard link and gets a 403 page for /dashboard', async () => {
  const { page } = customer;
  await page.goto('/orders');
  await expectPage(page, 'My orders');
  await expectCount(navLink(page, 'My orders'), 1);
  await expectCount(navLink(page, 'New order'), 1);
  assert.equal(await navLink(page, 'Dashboard').count(), 0);

  const res = await page.goto('/dashboard');
  assert.equal(res.status(), 403);
  assert.match(res.headers()['content-type'] ?? '', /^text\/html/);
  await expectCount(page.getByRole('heading', { level: 1 }), 1);
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  await screenshot(page, '403');
});

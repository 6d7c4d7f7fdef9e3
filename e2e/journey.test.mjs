// The whole journey: a customer signs up, orders and signs out; the shop admin finds the order on
// the dashboard and approves it while the customer's open /orders page updates by itself.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ADMIN,
  PHONE,
  assertNoProblems,
  assertNoReload,
  expectCount,
  expectPage,
  expectStatus,
  launch,
  markDocument,
  navLink,
  newPage,
  orderRow,
  placeOrder,
  register,
  screenshot,
  searchDashboard,
  signIn,
  signOut,
  tabCount,
  texts,
  uniqueName,
} from './lib.mjs';

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test('register, order, sign out; the admin approves and the customer sees it live', { timeout: 90_000 }, async () => {
  const started = performance.now();
  const username = uniqueName();
  const item = `Walnut desk ${username}`;

  // Sign up from the sign-in page's link, then sign in.
  const { page } = await newPage(browser);
  await page.goto('/login');
  await expectPage(page, 'Sign in');
  await screenshot(page, 'login');
  await page.getByRole('link', { name: 'Create an account' }).first().click(); // nav and page both have one
  await page.waitForURL((url) => url.pathname === '/register');
  await expectPage(page, 'Create an account');
  await register(page, { username, email: `${username}@example.com` });
  await signIn(page, username);
  assert.equal(await navLink(page, 'Dashboard').count(), 0, 'a customer has no Dashboard link');

  // Place an order from the nav's "New order" link.
  await navLink(page, 'New order').click();
  await page.waitForURL((url) => url.pathname === '/orders/new');
  const id = await placeOrder(page, { item, quantity: 2, notes: 'Please wrap it.' });
  assert.equal(await page.getByLabel('Item').inputValue(), '', 'the form is cleared after success');
  await screenshot(page, 'new-order');

  // The detail page shows the order and its first audit events.
  await page.getByRole('link', { name: 'View order' }).click();
  await page.waitForURL((url) => url.pathname === `/orders/${id}`);
  await expectPage(page, /^Order/);
  const eventsBefore = await page.locator('ol.timeline > li').count();
  assert.ok(eventsBefore >= 1, 'the timeline records the order being placed');
  await signOut(page);

  // The customer again, in a second context, keeps /orders open (its SSE connection).
  const customer = await newPage(browser);
  await signIn(customer.page, username);
  const customerRow = orderRow(customer.page, id);
  await expectStatus(customerRow, 'PENDING');
  await expectCount(customerRow.getByRole('button', { name: 'Cancel' }), 1);
  await markDocument(customer.page);

  // The admin finds the order by the customer's username and approves it in place.
  const admin = await newPage(browser);
  await signIn(admin.page, ADMIN.username, ADMIN.password);
  await navLink(admin.page, 'Dashboard').click();
  await admin.page.waitForURL((url) => url.pathname === '/dashboard');
  await expectPage(admin.page, 'Dashboard');
  for (const card of ['total', 'pending', 'approval-rate', 'median-decision']) {
    await expectCount(admin.page.locator(`[data-card="${card}"]`), 1);
  }
  await expectCount(admin.page.locator('svg#orders-chart'), 1);
  await expectCount(admin.page.getByRole('link', { name: 'Export CSV' }), 1);
  await markDocument(admin.page);
  await searchDashboard(admin.page, username);
  const adminRow = orderRow(admin.page, id, '#admin-orders');
  await expectCount(adminRow, 1);
  await expectCount(admin.page.locator('#admin-orders td.customer').filter({ hasNotText: username }), 0, {
    timeout: 3_000,
  });
  assert.deepEqual([...new Set(await texts(admin.page.locator('#admin-orders td.customer')))], [username]);
  await expectStatus(adminRow, 'PENDING');
  await screenshot(admin.page, 'dashboard');
  await adminRow.getByRole('button', { name: 'Approve' }).click();
  await expectStatus(adminRow, 'APPROVED');
  await assertNoReload(admin.page);

  // Meanwhile the customer's page shows the decision without a reload.
  await expectStatus(customerRow, 'APPROVED', { timeout: 10_000 });
  await assertNoReload(customer.page);

  // After a reload the tabs count it as approved.
  await customer.page.reload();
  assert.equal(await tabCount(customer.page, 'all'), 1);
  assert.equal(await tabCount(customer.page, 'pending'), 0);
  assert.equal(await tabCount(customer.page, 'approved'), 1);
  await expectStatus(customerRow, 'APPROVED');
  await screenshot(customer.page, 'my-orders');

  // The same list at phone width.
  const phone = await newPage(browser, { viewport: PHONE, storageState: await customer.context.storageState() });
  await phone.page.goto('/orders');
  await expectPage(phone.page, 'My orders');
  await expectStatus(orderRow(phone.page, id), 'APPROVED');
  await screenshot(phone.page, 'my-orders-phone');

  // The order's timeline gained the approval, newest last.
  await customerRow.locator(`a[href$="/orders/${id}"]`).click();
  await customer.page.waitForURL((url) => url.pathname === `/orders/${id}`);
  await expectPage(customer.page, /^Order/);
  const events = customer.page.locator('ol.timeline > li');
  assert.equal(await events.count(), eventsBefore + 1, 'one new timeline entry for the approval');
  assert.match((await texts(events)).at(-1), /approv/i);
  await screenshot(customer.page, 'order-detail');

  for (const p of [customer.page, admin.page, phone.page]) assertNoProblems(p);

  const seconds = (performance.now() - started) / 1000;
  assert.ok(seconds < 60, `the journey took ${seconds.toFixed(1)} s (limit 60 s)`);
});

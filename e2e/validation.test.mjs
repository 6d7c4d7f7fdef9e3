// Inline validation: the sign-up form while typing and after submit, and the order form, which
// must create nothing when its input is wrong.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  CUSTOMER_PASSWORD,
  assertNoReload,
  eventually,
  expectPage,
  expectText,
  launch,
  markDocument,
  newCustomer,
  newPage,
  screenshot,
  setValues,
  submitForm,
  submitLogin,
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

/** Waits until `#<field>-error` shows an error (or, when `shown` is false, is empty or absent). */
async function expectError(page, field, shown = true, opts) {
  await eventually(async () => {
    const [text = ''] = await texts(page.locator(`#${field}-error`));
    if (shown) assert.notEqual(text, '', `#${field}-error shows an error`);
    else assert.equal(text, '', `#${field}-error is empty, not ${JSON.stringify(text)}`);
  }, opts);
}

/** Waits for the input's aria-invalid to be "true" (or anything else when `invalid` is false). */
async function expectInvalid(input, invalid = true) {
  await eventually(async () => {
    const value = await input.evaluate((el) => el.getAttribute('aria-invalid'));
    if (invalid) assert.equal(value, 'true', `aria-invalid of ${input}`);
    else assert.notEqual(value, 'true', `aria-invalid of ${input}`);
  });
}

/** Empties every `#…-error` element. */
async function clearErrors(page) {
  await page.locator('[id$="-error"]').evaluateAll((els) => {
    for (const el of els) el.textContent = '';
  });
}

/** The strength meter's position from 0 to 1, and its words. */
async function strength(page) {
  const position = await page
    .locator('meter#password-strength')
    .evaluate((m) => (m.value - m.min) / (m.max - m.min));
  const [words] = await texts(page.locator('#password-strength-text'));
  return { position, words };
}

test('sign-up shows inline errors while typing', async () => {
  const { page } = await newPage(browser);
  await page.goto('/register');
  await expectPage(page, 'Create an account');
  const username = page.getByLabel('Username', { exact: true });
  const password = page.getByLabel('Password', { exact: true });

  // A too short username, then a guessable password: errors, and the meter stays low.
  await username.pressSequentially('ab', { delay: 30 });
  await expectError(page, 'username');
  await expectInvalid(username);
  await password.pressSequentially('password', { delay: 30 });
  await expectError(page, 'password');
  await expectInvalid(password);
  await eventually(async () => {
    const { position, words } = await strength(page);
    assert.ok(['Very weak', 'Weak'].includes(words), `strength text ${JSON.stringify(words)}`);
    assert.ok(position <= 0.25, `meter at ${position} for "password"`);
  });

  // Fixing them clears the errors, and the meter rises as the password grows.
  await username.pressSequentially('cdef', { delay: 30 });
  await expectError(page, 'username', false);
  await expectInvalid(username, false);
  await password.fill('');
  await password.pressSequentially(CUSTOMER_PASSWORD, { delay: 10 });
  await expectError(page, 'password', false);
  await expectInvalid(password, false);
  await eventually(async () => {
    const { position, words } = await strength(page);
    assert.ok(['Good', 'Strong'].includes(words), `strength text ${JSON.stringify(words)}`);
    assert.ok(position >= 0.75, `meter at ${position} for a strong password`);
  });
});

test('sign-up shows inline errors after submit and creates no account', async () => {
  const { page } = await newPage(browser);
  const submit = page.getByRole('button', { name: 'Create account' });

  // Every field wrong. The values are set without typing, so only the submit can show errors.
  await page.goto('/register');
  await setValues(page, { Username: 'ab', Password: 'password', 'Email (optional)': 'not-an-email' });
  await submitForm(page, submit);
  await expectError(page, 'username');
  await expectError(page, 'password');
  await expectError(page, 'email');
  assert.equal(new URL(page.url()).pathname, '/register');
  for (const label of ['Username', 'Password', 'Email (optional)']) {
    await expectInvalid(page.getByLabel(label, { exact: true }));
  }
  await screenshot(page, 'register');

  // A good username with a guessable password is still refused, and no account exists.
  const name = uniqueName();
  await page.goto('/register');
  await setValues(page, { Username: name, Password: 'password' });
  const answer = await submitForm(page, submit);
  const status = answer.status();
  assert.ok(status < 300 || status >= 400, `the refused sign-up answers ${status}, not a redirect`);
  await expectError(page, 'password');
  await expectError(page, 'username', false);
  assert.equal(new URL(page.url()).pathname, '/register');
  await submitLogin(page, name, 'password');
  await expectText(page.locator('#login-error[role="alert"]'), 'Invalid username or password.');
});

test('the order form shows inline errors and creates nothing', async () => {
  const { page } = await newCustomer(browser);
  await page.goto('/orders/new');
  await expectPage(page, 'New order');
  await markDocument(page);
  const item = page.getByLabel('Item');
  const quantity = page.getByLabel('Quantity');
  const submit = page.getByRole('button', { name: 'Place order' });

  // Empty item.
  await item.fill('');
  await quantity.fill('1');
  await submitForm(page, submit);
  await expectError(page, 'item_name');

  // Quantity below and above the range, with a good item.
  for (const bad of ['0', '101']) {
    await item.fill('Oak shelf');
    await quantity.fill(bad);
    await clearErrors(page); // so the next check sees this answer's errors, not the last one's
    await submitForm(page, submit);
    await expectError(page, 'quantity');
    await expectError(page, 'item_name', false);
  }
  await expectError(page, 'notes', false);
  await assertNoReload(page);
  const placed = page.locator('div.flash[role="status"]').filter({ hasText: 'Order placed.' });
  assert.equal(await placed.count(), 0);

  // Nothing was created.
  await page.goto('/orders');
  assert.equal(await tabCount(page, 'all'), 0);
  assert.equal(await page.locator('#orders tr[data-order-id]').count(), 0);
});

const { chromium } = require('playwright-core');
(async () => {
  // node swagger-try-it-out.js <docs url> <png> [bearer credentials]: with credentials (an
  // API key of [auth]), it first clicks "Authorize", enters them and closes the dialog.
  const url = process.argv[2], out = process.argv[3], bearer = process.argv[4];
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  await page.goto(url);
  if (bearer) {
    await page.locator('.auth-wrapper .authorize').click();
    const dialog = page.locator('.modal-ux');
    await dialog.locator('input[type=text], input[type=password]').first().fill(bearer);
    await dialog.locator('.auth-btn-wrapper .authorize').click();
    await dialog.locator('.auth-btn-wrapper .btn-done').click();
  }
  // The pipeline route's POST, whatever else the document lists before it.
  const op = page.locator('.opblock-post')
    .filter({ has: page.locator('.opblock-summary-path', { hasText: /^\/patientprofile$/ }) })
    .first();
  await op.locator('.opblock-summary').click();
  await op.locator('.try-out__btn').click();
  await op.locator('.execute').click();
  const status = op.locator('.live-responses-table tbody .response-col_status').first();
  await status.waitFor({ timeout: 15000 });
  const code = (await status.innerText()).trim();
  console.log('Try it out answered', code);
  await op.scrollIntoViewIfNeeded();
  await page.screenshot({ path: out, fullPage: true });
  await browser.close();
  process.exit(code.startsWith('202') ? 0 : 1);
})().catch(e => { console.error(e); process.exit(2); });

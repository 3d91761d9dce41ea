const { chromium } = require('playwright-core');
(async () => {
  const url = process.argv[2], out = process.argv[3];
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
  await page.goto(url);
  const op = page.locator('.opblock-post').first();
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

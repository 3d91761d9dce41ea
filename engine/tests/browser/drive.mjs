// A headless Chromium page that a test drives one command at a time: each line on stdin is a
// JSON command, each answer a JSON line on stdout ({"ok":true,"value":…} or {"ok":false,
// "error":"…"}). The test (engine/tests/operator_page.rs) holds the logic; this only drives.
//
//   node drive.mjs <browser-tools dir> <chromium path>
//
// Commands: {"cmd":"open","url":…}, {"cmd":"wait","js":<expression>,"timeout":ms},
// {"cmd":"eval","js":<expression>}, {"cmd":"fill","selector":…,"text":…},
// {"cmd":"click","selector":…}, {"cmd":"screenshot","path":…}, {"cmd":"console"} (what the
// page logged, errors included), {"cmd":"close"}.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const [tools, executablePath] = process.argv.slice(2);
const { chromium } = createRequire(tools + "/")("playwright-core");

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // As root on a machine with a closed network: no sandbox, nothing fetched in the background.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
const console_ = [];
page.on("console", (m) => console_.push(`${m.type()}: ${m.text()}`));
page.on("pageerror", (e) => console_.push(`pageerror: ${e.message}`));

const answer = (value) => process.stdout.write(JSON.stringify(value) + "\n");

async function run(command) {
  switch (command.cmd) {
    case "open":
      await page.goto(command.url, { waitUntil: "load" });
      return null;
    case "wait": {
      // Polled from here: page.evaluate runs over the DevTools protocol, where the page's
      // Content-Security-Policy (no eval) does not apply; waitForFunction would eval in it.
      const deadline = Date.now() + (command.timeout ?? 30000);
      for (;;) {
        const value = await page.evaluate(command.js).catch((e) => {
          throw new Error(`${command.js}: ${e.message}`);
        });
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`still false after ${command.timeout ?? 30000} ms: ${command.js}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    case "console":
      return console_;
    case "eval":
      return await page.evaluate(command.js);
    case "fill":
      await page.fill(command.selector, command.text);
      return null;
    case "click":
      await page.click(command.selector);
      return null;
    case "screenshot":
      await page.screenshot({ path: command.path, fullPage: true });
      return null;
    case "close":
      await browser.close();
      return null;
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let command;
  try {
    command = JSON.parse(line);
    answer({ ok: true, value: await run(command) });
  } catch (e) {
    answer({ ok: false, error: String(e && e.message ? e.message : e), console: console_ });
  }
  if (command && command.cmd === "close") break;
}
await browser.close().catch(() => {});

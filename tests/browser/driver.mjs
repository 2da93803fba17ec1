// Drives one headless Debian chromium page for the panel's browser tests
// and the alert benchmark. One JSON command per line on stdin, one JSON
// answer per line on stdout ({ok: true, value} or {ok: false, error}).
//
//   {"cmd": "goto", "url": "..."}
//   {"cmd": "fill", "selector": "...", "value": "..."}
//   {"cmd": "click", "selector": "..."}
//   {"cmd": "select", "selector": "...", "value": "..."}
//   {"cmd": "wait", "selector": "...", "state": "visible", "timeout_ms": 10000}
//   {"cmd": "wait_function", "expression": "...", "arg": ..., "timeout_ms": 10000}
//   {"cmd": "eval", "expression": "...", "arg": ...}
//   {"cmd": "screenshot", "path": "...", "selector": "..." (optional)}
//   {"cmd": "quit"}
//
// "expression" is a function's source, called with "arg" in the page.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const console_lines = [];
page.on("console", m => console_lines.push(m.type() + ": " + m.text()));
page.on("pageerror", e => console_lines.push("pageerror: " + e.message));

function fn(src) {
  // eslint-disable-next-line no-new-func
  return new Function("return (" + src + ")")();
}

async function run(c) {
  const timeout = c.timeout_ms ?? 10000;
  switch (c.cmd) {
    case "goto": await page.goto(c.url, { waitUntil: "domcontentloaded" }); return page.url();
    case "fill": await page.fill(c.selector, c.value, { timeout }); return null;
    case "click": await page.click(c.selector, { timeout }); return null;
    case "select": return await page.selectOption(c.selector, c.value, { timeout });
    case "wait": await page.waitForSelector(c.selector, { state: c.state ?? "visible", timeout }); return null;
    case "wait_function": {
      const h = await page.waitForFunction(fn(c.expression), c.arg ?? null, { timeout, polling: "raf" });
      return await h.jsonValue();
    }
    case "eval": return await page.evaluate(fn(c.expression), c.arg ?? null);
    case "screenshot":
      if (c.selector) await page.locator(c.selector).first().screenshot({ path: c.path, timeout });
      else await page.screenshot({ path: c.path, fullPage: true });
      return c.path;
    case "console": return console_lines.splice(0);
    case "quit": await browser.close(); process.exit(0);
    default: throw new Error("unknown command " + c.cmd);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = { ok: true, value: await run(JSON.parse(line)) };
  } catch (e) {
    answer = { ok: false, error: String(e && e.message || e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();

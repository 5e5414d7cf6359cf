// Real-browser test of the page: headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core, which downloads no browser) opens the page served by `tinypoet serve`, writes
// a poem for a fixed title and seed, and compares the text with the host's (`tinypoet generate`).
//
//   node web/test/browser.mjs --url URL --title T --mode title|text --seed N --expect FILE
//                             [--screenshot PNG] [--bench-chars N --bench-runs R]
//
// FILE holds the host's stdout (`tinypoet generate --title T`: the title, a newline, the poem;
// `tinypoet generate T`: T and its continuation). Prints the page's characters per second; with --bench-chars,
// also the median rate of R runs of N characters each (no stop at the poem's end, seeds 1..R),
// the figure of docs/results-web.md. Exit 0 = same text.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.TINYPOET_WEB_TEST_DIR || path.join(here, "..", "..", "target", "web-test");
const { chromium } = createRequire(path.join(modules, "package.json"))("playwright-core");

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
for (const k of ["url", "title", "mode", "seed", "expect"]) {
  if (!args[k]) {
    console.error(`usage: node browser.mjs --url URL --title T --seed N --expect FILE [--screenshot PNG]`);
    process.exit(2);
  }
}
const expected = readFileSync(args.expect, "utf8").replace(/\n$/, "");
const timeoutMs = 120_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 }, deviceScaleFactor: 1 });
  const logs = [];
  page.on("console", (m) => logs.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`page error: ${e.message}`));
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));

  await page.goto(args.url, { waitUntil: "load" });
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state), null, { timeout: timeoutMs });
  // Type the title and the seed as a person would, then press Write.
  await page.fill("#title", args.title);
  await page.selectOption("#mode", args.mode);
  await page.fill("#seed", String(args.seed));
  if (args.temperature) await page.fill("#temperature", String(args.temperature));
  await page.click("#write");
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state), null, { timeout: timeoutMs });

  const state = await page.evaluate(() => document.body.dataset.state);
  // As the host prints it: a title on its own line, an opening followed by its continuation.
  const got = await page.evaluate(() => {
    const head = document.querySelector("#poem .title, #poem .opening");
    const body = document.querySelector("#poem .body");
    if (!head || !body) return null;
    return head.textContent + (head.className === "title" ? "\n" : "") + body.textContent;
  });
  const note = await page.textContent("#note");
  const statsLine = await page.textContent("#stats");
  const rate = await page.evaluate(() => document.body.dataset.charsPerSecond);
  if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });

  const origin = new URL(args.url).origin;
  const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith("data:") && !u.startsWith("blob:"));
  console.log(`page note: ${note}`);
  console.log(`page stats: ${statsLine}`);
  console.log(`page text: ${JSON.stringify(got)}`);
  console.log(`host text: ${JSON.stringify(expected)}`);
  if (state !== "done") {
    failed = true;
    console.log(`FAIL: the page ended in state ${state}`);
  } else if (got !== expected) {
    failed = true;
    console.log("FAIL: the page's poem differs from the host's");
  } else {
    console.log(`ok: same text (${[...expected].length} characters); ${rate} characters/s in headless Chromium`);
  }
  if (foreign.length) {
    failed = true;
    console.log(`FAIL: requests outside the origin: ${foreign.join(", ")}`);
  }
  if (failed) for (const l of logs) console.log(l);

  if (!failed && args["bench-chars"]) {
    const n = Number(args["bench-chars"]), runs = Number(args["bench-runs"] || 5);
    const rates = [];
    for (let seed = 1; seed <= runs; seed++) {
      const u = new URL(args.url);
      u.search = new URLSearchParams({ title: args.title, mode: args.mode, seed, max: n, nostop: "", write: "" }).toString();
      await page.goto(u.toString(), { waitUntil: "load" });
      await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state) &&
        document.body.dataset.charsPerSecond, null, { timeout: timeoutMs });
      rates.push(Number(await page.evaluate(() => document.body.dataset.charsPerSecond)));
    }
    rates.sort((a, b) => a - b);
    console.log(`bench: ${n} characters x ${runs} runs in headless Chromium: median ` +
      `${rates[Math.floor(runs / 2)].toFixed(1)} characters/s (all: ${rates.join(", ")})`);
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);

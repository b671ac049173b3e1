// Drives the playground (build-output/web/php-<build>/index.html) in headless Chromium through
// playwright-core, for tests/test_web.py. Usage: node tests/browser.mjs CHROMIUM JOB.json
// JOB: {"visits": [{"url": ..., "stop": code (optional: run, then Stop), "type": code (optional:
// typed, then Run)}]}
// Prints one JSON object per visit (a list): what the page shows once the run has ended.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [executable, jobFile] = process.argv.slice(2);
const job = JSON.parse(readFileSync(jobFile, "utf8"));
const TIMEOUT = 120_000;

// Chromium on these machines: no sandbox as root, nothing reaching outside (machines.md).
const browser = await chromium.launch({
  executablePath: executable,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check"],
});

async function visit(spec) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const console = [];
  page.on("console", (message) => console.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => console.push(`pageerror: ${error.message}`));
  await page.goto(spec.url);
  // Ready: the module is compiled and PHP has said its version (or could not).
  await page.waitForFunction(() => document.getElementById("php-version").textContent !== "…",
    null, { timeout: TIMEOUT });
  if (spec.stop !== undefined) {
    // A script that never ends: the page must stay responsive (PHP runs in the worker), and
    // Stop must bring back a PHP that runs the next script.
    await page.fill("#code", spec.stop);
    await page.click("#run");
    await page.waitForTimeout(1000);
    const responsive = await page.evaluate(() => document.getElementById("status").textContent);
    await page.click("#stop");
    await page.waitForFunction(() => !document.getElementById("run").disabled, null, { timeout: TIMEOUT });
    console.push(`status while the endless script ran: ${responsive}`);
  }
  if (spec.type !== undefined) {
    await page.fill("#code", spec.type);
    await page.click("#run");
  }
  await page.waitForFunction(() => document.getElementById("exit-status").dataset.exit !== "",
    null, { timeout: TIMEOUT });
  const seen = await page.evaluate(() => {
    const text = (id) => document.getElementById(id).textContent;
    const metrics = document.getElementById("metrics").dataset;
    return {
      output: text("output"),
      stderr: Array.from(document.querySelectorAll("#output .stderr"), (n) => n.textContent).join(""),
      exit: document.getElementById("exit-status").dataset.exit,
      exitText: text("exit-status"),
      version: text("php-version"),
      uname: text("php-uname"),
      sha256: text("sha256"),
      sameModule: document.getElementById("same-module").dataset.same,
      bytes: Number(metrics.bytes),
      wasmBytes: Number(metrics.wasmBytes),
      compileMs: Number(metrics.compileMs),
      firstOutputMs: Number(metrics.firstOutputMs),
      shownBytes: text("bytes-transferred"),
      shownFirstOutput: text("first-output"),
    };
  });
  await context.close();
  return { ...seen, console };
}

const results = [];
try {
  for (const spec of job.visits) {
    results.push(await visit(spec));
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results) + "\n");

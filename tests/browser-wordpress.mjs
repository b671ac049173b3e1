// Drives WordPress in the browser (build-output/web/php-<build>-wordpress/wordpress.html) in
// headless Chromium through playwright-core, for tests/test_web.py.
// Usage: node tests/browser-wordpress.mjs CHROMIUM BASE_URL PROFILE_DIR
// Install, log in, publish a post, then close the browser and start it again on the same
// profile: the service worker starts from nothing and must restore the site from IndexedDB.
// Prints one JSON object: what each step saw, with times in ms.
import { chromium } from "playwright-core";

const [executable, base, profile] = process.argv.slice(2);
const TIMEOUT = 180_000;
const PASSWORD = "kiln-in-the-browser-4711";
const POST = "Written in the browser by php-cgi.wasm";
const args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check"];
const launch = () => chromium.launchPersistentContext(profile, { executablePath: executable, headless: true, args });

const seen = { errors: [] };
const watch = (page) => page.on("pageerror", (error) => seen.errors.push(error.message));
const text = async (page) => (await page.innerText("body")).slice(0, 4000);
const submit = (page, selector) => Promise.all([page.waitForNavigation({ timeout: TIMEOUT }), page.click(selector)]);

let context = await launch();
try {
  let page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watch(page);
  let started = Date.now();
  await page.goto(`${base}/wordpress.html`);
  await page.waitForURL(/\/wordpress\/wp-admin\/install\.php/);
  await page.waitForSelector("#weblog_title");
  seen.installer = { url: page.url(), title: await page.title(), ms: Date.now() - started };

  await page.fill("#weblog_title", "Kiln in the browser");
  await page.fill("#user_login", "admin");
  await page.fill("#pass1", PASSWORD);
  await page.fill("#admin_email", "admin@example.test");
  started = Date.now();
  await submit(page, "#submit");
  seen.installed = { title: await page.title(), text: await text(page), ms: Date.now() - started };

  await page.goto(`${base}/wordpress/wp-login.php`);
  await page.fill("#user_login", "admin");
  await page.fill("#user_pass", PASSWORD);
  started = Date.now();
  await submit(page, "#wp-submit");
  seen.login = { url: page.url(), title: await page.title(), ms: Date.now() - started };

  // Publish through WordPress's REST API with the dashboard's nonce: the request goes from the
  // page through the service worker to php-cgi.wasm like any other.
  started = Date.now();
  seen.post = await page.evaluate(async ([root, title]) => {
    const response = await fetch(`${root}/index.php?rest_route=/wp/v2/posts`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-WP-Nonce": window.wpApiSettings.nonce },
      body: JSON.stringify({ title, content: "A post kept in IndexedDB.", status: "publish" }),
    });
    return { status: response.status, body: await response.json() };
  }, [`${new URL(base).pathname.replace(/\/$/, "")}/wordpress`, POST]);
  seen.post.ms = Date.now() - started;

  await page.goto(`${base}/wordpress/`);
  seen.front = { title: await page.title(), text: await text(page) };
} finally {
  await context.close();
}

context = await launch();
try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watch(page);
  const started = Date.now();
  await page.goto(`${base}/wordpress/`);
  seen.reloaded = { title: await page.title(), text: await text(page), ms: Date.now() - started };
  await page.goto(`${base}/wordpress/wp-admin/`);
  seen.dashboard = { url: page.url(), title: await page.title() };
} finally {
  await context.close();
}
process.stdout.write(JSON.stringify(seen) + "\n");

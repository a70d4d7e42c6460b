// The console's browser test: Debian's Chromium driven by playwright-core.
// tests/console.rs starts hubsync (fixtures ingested, one case's messages
// dead-lettered) and a signature-verifying receiver, then runs this with:
//   CONSOLE_URL, CONSOLE_TOKEN, CONSOLE_PROGRAM, CONSOLE_CASE, SCREENSHOT_DIR
// Scenario: log in, open a feed and a file, open the case's journey, replay
// a dead letter from it and wait until the journey shows it delivered, look
// at the other pages, log out. axe-core runs on every page (no serious or
// critical violation allowed); the page must log no error (a CSP violation
// would). A screenshot of each page goes to SCREENSHOT_DIR.
// Prints "replayed <webhook-id>" for the Rust side to check the receiver.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env("CONSOLE_URL");
const token = env("CONSOLE_TOKEN");
const program = env("CONSOLE_PROGRAM");
const caseId = env("CONSOLE_CASE");
const shots = env("SCREENSHOT_DIR");

const started = Date.now();
const log = (...a) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);
const fail = (msg) => {
  throw new Error(msg);
};

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "hubsync-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 860 },
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
// Nothing may leave the machine: any request not to the console is refused.
await context.route("**/*", (route) =>
  route.request().url().startsWith(base) ? route.continue() : route.abort(),
);

const page = context.pages()[0] || (await context.newPage());
const problems = [];
page.on("console", (m) => {
  if (m.type() === "error") problems.push(`console error on ${page.url()}: ${m.text()}`);
});
page.on("pageerror", (e) => problems.push(`script error on ${page.url()}: ${e.message}`));

const axeFindings = [];
async function check(name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ["violations"] }),
  );
  for (const v of result.violations) {
    const line = `${name}: [${v.impact}] ${v.id}: ${v.help} (${v.nodes.length}×: ${v.nodes
      .slice(0, 3)
      .map((n) => n.target.join(" "))
      .join(", ")})`;
    if (v.impact === "serious" || v.impact === "critical") axeFindings.push(line);
    else log("axe (minor):", line);
  }
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  log("checked", name, page.url().replace(base, ""));
}

async function expectHeading(text) {
  const h1 = (await page.textContent("h1")) || "";
  if (!h1.includes(text)) fail(`expected an h1 with "${text}" on ${page.url()}, got "${h1}"`);
}

try {
  // Signed out, the console sends us to the login form.
  await page.goto(`${base}/console/feeds`);
  if (!page.url().endsWith("/console/login")) fail(`not sent to login: ${page.url()}`);
  await check("login");
  await page.getByLabel("Your name").fill("Dana Tester");
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/console\/feeds$/);
  await expectHeading("Feeds");
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "hubsync_session");
  if (!session || !session.httpOnly || session.sameSite !== "Strict") fail(`session cookie: ${JSON.stringify(session)}`);
  if (page.url().includes(token)) fail("the token is in a URL");
  await check("feeds");

  // A feed, then one of its files (the one with rejected rows).
  await page.getByRole("link", { name: "acme-hub", exact: true }).first().click();
  await expectHeading("Feed acme-hub");
  await check("feed");
  await page.getByRole("link", { name: "status_bad_rows.csv" }).first().click();
  await expectHeading("status_bad_rows.csv");
  if (!(await page.textContent("main")).includes("Rejected rows")) fail("no rejects section");
  await check("file");

  // Subscribers and the one with dead letters.
  await page.getByRole("link", { name: "Subscribers", exact: true }).click();
  await expectHeading("Subscribers");
  await check("subscribers");
  await page.getByRole("link", { name: "mfr", exact: true }).click();
  await expectHeading("Subscriber mfr");
  await check("subscriber");

  // Cases: search for the case, see its journey.
  await page.getByRole("link", { name: "Cases", exact: true }).click();
  await expectHeading("Cases");
  await check("cases");
  await page.getByLabel("Program").selectOption(program);
  await page.getByLabel("Case id").fill(caseId);
  await page.getByRole("button", { name: "Show the journey" }).click();
  await expectHeading(`Case ${caseId}`);
  const steps = await page.locator("ol.journey > li").count();
  if (steps < 1) fail("the journey has no steps");
  const failedBefore = await page.locator("ol.journey .badge.bad").count();
  if (failedBefore < 1) fail("no dead letter on the journey");
  await check("case");

  // Replay the first dead letter from the journey: confirm, then wait for delivery.
  const form = page.locator("ol.journey form.inline-action").first();
  const messageId = await form.locator('input[name="message_id"]').inputValue();
  await form.getByRole("button").click();
  await expectHeading("Replay to mfr?");
  await check("confirm");
  await page.getByRole("button", { name: /^Yes, replay 1 message$/ }).click();
  await page.waitForURL(/\/console\/subscribers\/mfr$/);
  const flash = (await page.textContent(".flash")) || "";
  if (!flash.includes("1 message queued again")) fail(`no confirmation message: "${flash}"`);
  const journey = `${base}/console/cases?program=${encodeURIComponent(program)}&case_id=${encodeURIComponent(caseId)}`;
  let delivered = false;
  for (let i = 0; i < 60 && !delivered; i++) {
    await page.goto(journey);
    const step = page.locator("ol.journey > li", { has: page.locator(`input[value="${messageId}"]`) });
    delivered = (await step.count()) === 0 && (await page.locator("ol.journey .badge.bad").count()) === failedBefore - 1;
    if (!delivered) await page.waitForTimeout(250);
  }
  if (!delivered) fail(`${messageId} still not delivered after replay`);
  await page.screenshot({ path: path.join(shots, "case-after-replay.png"), fullPage: true });
  console.log(`replayed ${messageId}`);

  // Trends and the audit log (which names who replayed).
  await page.getByRole("link", { name: "Trends", exact: true }).click();
  await expectHeading("Trends");
  if ((await page.locator("svg.chart").count()) < 2) fail("trend charts missing");
  await check("trends");
  await page.getByRole("link", { name: "Activity", exact: true }).click();
  await expectHeading("Activity");
  const activity = await page.textContent("main");
  if (!activity.includes("Dana Tester") || !activity.includes("replay")) fail("the replay is not in the audit log");
  await check("activity");

  // Log out: the cookie goes, and the console asks for a login again.
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/console\/login\?signed_out=1$/);
  if (!(await page.textContent("main")).includes("You are signed out.")) fail("no signed-out message");
  if ((await context.cookies()).some((c) => c.name === "hubsync_session" && c.value)) fail("cookie kept");
  await page.goto(`${base}/console/subscribers`);
  if (!page.url().endsWith("/console/login")) fail("still signed in after logout");

  if (axeFindings.length) fail(`accessibility (axe-core): serious or critical violations:\n${axeFindings.join("\n")}`);
  if (problems.length) fail(`the pages logged errors:\n${problems.join("\n")}`);
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)}s; screenshots in ${shots}`);
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

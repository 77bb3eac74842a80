// Drives the console in a real headless Chromium, as a person would: sign in with an API key,
// deploy a program from files, request a proof, watch its task page reach `done` without a
// reload, verify it, browse the program's volume and download a file, and look at every page.
// A screenshot of each page goes to OUT. Run by crates/cli/tests/console.rs, which checks the
// results against the API; exits non-zero on the first failed step.
//
// Environment: URL, KEY (an API key), CONTROLLER and CIRCUIT (files to deploy), OUT (a folder),
// CHROMIUM (the browser executable).
"use strict";
const { chromium } = require("playwright-core");
const fs = require("fs");
const path = require("path");

const { URL, KEY, CONTROLLER, CIRCUIT, OUT } = process.env;
const STEP = 60_000;

function log(...a) {
  console.error("[console test]", ...a);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  let signedIn = false; // until then, the browser logs the API's 401 answers, as it should
  page.on("console", (m) => {
    const expected = !signedIn && /status of 401/.test(m.text());
    if (m.type() === "error" && !expected) problems.push("console error: " + m.text());
  });
  const shot = async (name) => page.screenshot({ path: path.join(OUT, name + ".png"), fullPage: true });
  const results = {};

  // Without a key, the service says it needs one.
  await page.goto(URL + "/");
  await page.locator("#identity", { hasText: "needs an API key" }).waitFor({ timeout: STEP });
  // The key, entered once, is kept for the session.
  await page.fill("#key", KEY);
  await page.click("#key-form button[type=submit]");
  await page.locator("#identity", { hasText: "signed in as" }).waitFor({ timeout: STEP });
  results.identity = await page.textContent("#identity");
  signedIn = true;
  log(results.identity);

  // Deploy from files.
  await page.setInputFiles("#deploy-form input[name=controller]", CONTROLLER);
  await page.setInputFiles("#deploy-form input[name=circuit]", CIRCUIT);
  await page.click("#deploy-form button[type=submit]");
  const deployed = page.locator("#deployed a");
  await deployed.waitFor({ timeout: 5 * STEP });
  results.program_id = (await deployed.textContent()).trim();
  log("deployed", results.program_id);
  await page.locator("#programs").getByText(results.program_id.slice(0, 12)).waitFor({ timeout: STEP });
  await shot("programs");

  // The program page: request a proof; the page moves to the task.
  await deployed.click();
  await page.waitForSelector("#submit-form", { timeout: STEP });
  // The task page's event stream: opened once, and not again after the task ended with it.
  let taskStreams = 0;
  page.on("request", (r) => { if (/\/v1\/tasks\/[^/]+\/events$/.test(r.url())) taskStreams++; });
  await page.fill("#args", JSON.stringify({ n: 3 }));
  await page.click("#submit-form button[type=submit]");
  await page.waitForURL(/#\/tasks\/[0-9a-f-]{36}$/, { timeout: STEP });
  results.task_id = page.url().split("/").pop();
  log("task", results.task_id);
  // Count reloads: the page must follow the task without one.
  let loads = 0;
  page.on("load", () => loads++);
  await page.locator("#task-status [data-status=done]").waitFor({ timeout: 5 * STEP });
  results.reloads = loads;
  results.timeline = await page.locator("#timeline tbody tr").count();
  results.journal_root = (await page.textContent("#journal-root")).trim();

  // Verify: the service's verdict.
  await page.click("#verify");
  await page.locator("#verdict-text").waitFor({ timeout: STEP });
  results.verdict = (await page.textContent("#verdict-text")).trim();
  log("verdict", results.verdict);
  // The receipt downloads as a file.
  const [receipt] = await Promise.all([page.waitForEvent("download", { timeout: STEP }), page.click("#download-receipt")]);
  await receipt.saveAs(path.join(OUT, "receipt.bin"));
  await shot("task");
  await page.waitForTimeout(3000); // longer than the page's reconnect delay
  results.task_streams = taskStreams;

  // Back to the program: its task list shows the task done; the volume browser finds the file
  // the entrypoint wrote, previews it and downloads it.
  await page.goto(URL + "/#/programs/" + results.program_id);
  await page.locator(`#tasks tr[data-task="${results.task_id}"] [data-status=done]`).waitFor({ timeout: STEP });
  await page.waitForSelector("#volume table#files, #volume .muted, #volume .error", { timeout: STEP });
  const trail = [];
  for (let depth = 0; depth < 6; depth++) {
    // The receipt the entrypoint wrote (INDEX, beside it, changes with every task).
    const file = page.locator("#volume [data-download]:not([data-download=INDEX])").first();
    if (await file.count()) break;
    const dir = page.locator("#files tbody a").first();
    if (!(await dir.count())) throw new Error("the volume has no file to download: " + trail.join(""));
    trail.push(await dir.textContent());
    await dir.click();
    await page.waitForFunction((t) => document.querySelector("#volume p.mono")?.textContent.includes(t),
      trail[trail.length - 1].replace(/\/$/, ""), { timeout: STEP });
  }
  const name = await page.locator("#volume [data-download]:not([data-download=INDEX])").first().getAttribute("data-download");
  results.file = "/" + trail.join("") + name;
  await page.click(`#volume [data-preview="${name}"]`);
  await page.waitForSelector("#preview-text", { timeout: STEP });
  const [file] = await Promise.all([page.waitForEvent("download", { timeout: STEP }), page.click(`#volume [data-download="${name}"]`)]);
  await file.saveAs(path.join(OUT, "downloaded.bin"));
  log("downloaded", results.file);
  await shot("program");

  // The task list, live: a second proof requested through the API appears and reaches done
  // on the open page.
  await page.goto(URL + "/#/tasks");
  await page.locator(`#tasks tr[data-task="${results.task_id}"]`).waitFor({ timeout: STEP });
  const r = await page.evaluate(async ({ id, key }) => {
    const res = await fetch(`/v1/programs/${id}/proofs`, {
      method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
      body: JSON.stringify({ args: { n: 2 } }),
    });
    return res.json();
  }, { id: results.program_id, key: KEY });
  results.second_task_id = r.task_id;
  await page.locator(`#tasks tr[data-task="${r.task_id}"] [data-status=done]`).waitFor({ timeout: 5 * STEP });
  await shot("tasks");

  // Markup in what the service returns (here a controller's error quoting a hostile argument
  // name) is shown as text: no element is made of it and no script runs.
  const markup = '<img src=x onerror="window.__xss=1">';
  const hostile = await page.evaluate(async ({ id, key, markup }) => {
    const res = await fetch(`/v1/programs/${id}/proofs`, {
      method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
      body: JSON.stringify({ args: { [markup]: 1 } }),
    });
    return res.json();
  }, { id: results.program_id, key: KEY, markup });
  await page.goto(URL + "/#/tasks/" + hostile.task_id);
  await page.locator("#task-status [data-status=failed]").waitFor({ timeout: 5 * STEP });
  results.markup_shown = await page.locator("dd.error").textContent();
  results.markup_ran = await page.evaluate(() => window.__xss !== undefined || document.querySelector("main img") !== null);

  // The other pages render.
  await page.goto(URL + "/#/root");
  await page.waitForSelector("#root", { timeout: STEP });
  await shot("root");
  await page.goto(URL + "/#/workers");
  await page.waitForSelector("#workers", { timeout: STEP });
  results.workers = await page.locator("#workers tbody tr").count();
  await shot("workers");
  await page.goto(URL + "/#/api");
  await page.locator("summary", { hasText: "/v1/programs/{id}/proofs" }).first().waitFor({ timeout: STEP });
  // The reference is interactive: call GET /health from it.
  const health = page.locator("details", { has: page.locator("code", { hasText: /^\/health$/ }) });
  await health.locator("summary").click();
  await health.getByRole("button", { name: "Try it" }).click();
  await health.locator("pre", { hasText: '"status": "ok"' }).waitFor({ timeout: STEP });
  await shot("api");

  // An id in the address bar that is not one is refused before any request is made with it.
  await page.goto(URL + "/#/tasks/..%2F..%2Fv1%2Fprograms");
  await page.locator("main .error", { hasText: "not a task id" }).waitFor({ timeout: STEP });

  results.problems = problems;
  fs.writeFileSync(path.join(OUT, "results.json"), JSON.stringify(results, null, 2));
  await browser.close();
}

main().catch((e) => {
  console.error("[console test] FAILED:", e);
  process.exit(1);
});

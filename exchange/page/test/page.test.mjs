// The market page in a real browser: Debian's Chromium (PCX_CHROMIUM, default /usr/bin/chromium),
// driven headless by playwright-core, against a real `pcx serve` on a fresh database of the
// PostgreSQL server at PCX_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres),
// with three real prover agents (one told to miss), their offers, a buyer's contract and the
// oracle's rounds. The binary is PCX_BIN, default target/debug/pcx of this repository.
//
// What a visitor relies on: the charts plot what the API says (as many points), the price moves
// when the oracle publishes a round without a reload, a buyer signs in with an API key or a wallet
// and sees each slot's state and reason on the timeline (one delivered, one failed over to the
// backup, one unused), and the page breaks no rule of its Content-Security-Policy. Screenshots go
// to screenshots/ (docs/market-page.png is one of them).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { chromium } from "playwright-core";
import { Wallet, getBytes } from "ethers";

const root = resolve(import.meta.dirname, "../../..");
const pcx = process.env.PCX_BIN ?? join(root, "target/debug/pcx");
const browserPath = process.env.PCX_CHROMIUM ?? "/usr/bin/chromium";
const server = process.env.PCX_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const database = `pcx_page_${Date.now()}_${process.pid}`;
const adminKey = `pcx_admin_page_${crypto.randomUUID().replaceAll("-", "")}`;
const dataDir = mkdtempSync(join(tmpdir(), "pcx-page-"));
const shots = join(import.meta.dirname, "screenshots");
const children = [];
let base = "";
let browser;

const SIZE10 = { system: "groth16-bn254", circuit: "hash-chain", size_log2: 10, deadline_secs: 60 };
const SIZE12 = { system: "groth16-bn254", circuit: "hash-chain", size_log2: 12, deadline_secs: 600 };
const FEED = "groth16-bn254:hash-chain:10:60";

function psql(sql) {
  execFileSync("psql", ["-q", "-v", "ON_ERROR_STOP=1", server, "-c", sql], { stdio: "pipe" });
}

function databaseUrl() {
  const url = new URL(server);
  url.pathname = `/${database}`;
  return url.toString();
}

async function freePort() {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => done(port));
    });
  });
}

function start(args, env) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PCX_") && k !== "DATABASE_URL"));
  const child = spawn(pcx, args, { env: { ...clean, PCX_LOG: "warn", ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}

async function until(what, seconds, probe) {
  const giveUp = Date.now() + seconds * 1000;
  let last;
  for (;;) {
    try {
      const got = await probe();
      if (got !== undefined && got !== false) return got;
    } catch (error) {
      last = error;
    }
    if (Date.now() > giveUp) throw new Error(`${what}: not within ${seconds} s${last ? ` (${last.message})` : ""}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The API, as a test client: JSON in and out; a non-2xx answer fails with its envelope. */
async function call(method, path, { token, body } = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (method === "POST") headers["Idempotency-Key"] = crypto.randomUUID();
  const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => null);
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${JSON.stringify(data)}`);
  return data;
}

async function account(adminToken, name, role, deposit) {
  const made = await call("POST", "/v1/accounts", { body: { name, role } });
  await call("POST", "/v1/admin/deposits", { token: adminToken, body: { account_id: made.account_id, amount: deposit } });
  const { token } = await call("POST", "/v1/auth/token", { body: { api_key: made.api_key } });
  return { ...made, token };
}

async function prover(adminToken, name, offers, fault) {
  const p = await account(adminToken, name, "prover", "1000");
  await call("POST", "/v1/provers/stake", { token: p.token, body: { amount: "500" } });
  for (const offer of offers) await call("POST", "/v1/offers", { token: p.token, body: offer });
  const args = ["prover", "--exchange", base, "--sizes", "10", "--claim-wait-secs", "2", "--workers", "1", "--backend", "cpu",
                "--keys-dir", join(dataDir, `keys-${name}`)];
  if (fault) args.push("--fault", fault);
  start(args, { PCX_API_KEY: p.api_key });
  return p;
}

before(async () => {
  if (!existsSync(browserPath)) return;
  psql(`CREATE DATABASE ${database}`);
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  start(["serve"], {
    DATABASE_URL: databaseUrl(),
    PCX_LISTEN: `127.0.0.1:${port}`,
    PCX_ADMIN_API_KEY: adminKey,
    PCX_DATA_DIR: dataDir,
    PCX_MIN_CADENCE_SECS: "10",
    PCX_SETTLEMENT_TICK_MS: "200",
    PCX_ORACLE_TICK_MS: "500",
    PCX_ORACLE_HEARTBEAT_SECS: "2",
    PCX_ORACLE_MIN_SOURCES: "1",
    PCX_OFFER_CAPACITY_CHECK: "off",
    PCX_DEV_KEYS: "true",
    // Five accounts, three agents and the page all sign in from 127.0.0.1.
    PCX_RATE_AUTH_PER_MIN: "6000",
  });
  await until("pcx serve healthy", 60, async () => (await fetch(`${base}/health`)).ok);
  browser = await chromium.launch({
    executablePath: browserPath,
    headless: true,
    // Without the background-networking flags Chromium keeps dialling Google on a closed network.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  for (const child of children) child.kill("SIGKILL");
  try {
    if (base) psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  } catch {
    // Left for the next run's clean-up.
  }
  rmSync(dataDir, { recursive: true, force: true });
});

/** Reads a chart's data-* attributes in the page. */
const chartData = (page, selector) => page.$eval(selector, (node) => ({ ...node.dataset }));

test("a visitor sees the live market, and a buyer their slots, in headless Chromium", { timeout: 240_000 }, async (t) => {
  if (!existsSync(browserPath)) {
    if (process.env.CI) assert.fail(`no Chromium at ${browserPath}: .ci/run installs Debian's chromium`);
    t.skip(`no Chromium at ${browserPath} (apt-get install chromium, or set PCX_CHROMIUM)`);
    return;
  }
  mkdirSync(shots, { recursive: true });
  const { token: adminToken } = await call("POST", "/v1/auth/token", { body: { api_key: adminKey } });

  // The market: three provers of the 2^10 class at three prices (mallory, the cheapest, offers only
  // the first slot's time and misses on purpose), and a second class in the book.
  const now = Date.now();
  const start0 = new Date(Math.ceil((now + 12_000) / 1000) * 1000);
  const offer = (proofClass, price, until, perHour = 360) => ({
    proof_class: proofClass,
    window_start: new Date(now).toISOString(),
    window_end: new Date(until).toISOString(),
    proofs_per_hour: perHour,
    price_per_proof: price,
  });
  const day = now + 86_400_000;
  await prover(adminToken, "mallory", [offer(SIZE10, "0.008", start0.getTime() + 5_000)], "miss");
  const alice = await prover(adminToken, "alice", [offer(SIZE10, "0.01", day), offer(SIZE12, "0.02", day, 120)]);
  await prover(adminToken, "bob", [offer(SIZE10, "0.012", day, 720), offer(SIZE12, "0.025", day, 60)]);

  // The buyer: three slots 10 s apart with one backup; inputs for the first two only.
  const buyer = await account(adminToken, "rollup", "buyer", "10");
  const quote = await call("POST", "/v1/quotes", {
    token: buyer.token,
    body: { proof_class: SIZE10, schedule: { start: start0.toISOString(), end: new Date(start0.getTime() + 30_000).toISOString(), every_secs: 10 }, redundancy: 1 },
  });
  assert.equal(quote.slot_count, 3);
  const contract = await call("POST", "/v1/contracts", { token: buyer.token, body: { quote_id: quote.quote_id } });
  for (const n of [0, 1]) {
    await call("PUT", `/v1/contracts/${contract.contract_id}/slots/${n}/input`, { token: buyer.token, body: { public_input: String(777 + n) } });
  }
  await until("a priced round of the 2^10 feed", 30, async () => (await call("GET", `/v1/oracle/prices/latest?feed=${FEED}`)).price);

  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  const refused = [];
  // A failed load is logged to the console too; the answers themselves are checked below.
  page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && problems.push(`console: ${m.text()}`));
  page.on("response", (r) => r.status() >= 400 && refused.push(`${r.status()} ${new URL(r.url()).pathname}`));
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  const wallet = Wallet.createRandom();
  await page.exposeFunction("pcxTestWalletSign", (hex) => wallet.signMessage(getBytes(hex)));
  await page.addInitScript(({ address }) => {
    // An EIP-1193 wallet holding one key, as a browser extension would inject it.
    window.ethereum = {
      request: async ({ method, params }) => {
        if (method === "eth_requestAccounts") return [address];
        if (method === "personal_sign") return window.pcxTestWalletSign(params[0]);
        throw new Error(`unsupported ${method}`);
      },
    };
  }, { address: wallet.address });

  const response = await page.goto(`${base}/`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-security-policy"], /script-src 'self'/);
  await page.evaluate(() => { window.pcxNoReload = true; });

  // Prices: the feed's row shows the API's latest round.
  await until("the 2^10 feed's row", 20, async () => (await page.$(`#feeds-body tr[data-feed="${FEED}"][data-round]`)) !== null);
  await until("the page shows the API's latest price", 20, async () => {
    const row = await page.$eval(`#feeds-body tr[data-feed="${FEED}"]`, (r) => ({ round: r.dataset.round, price: r.querySelector(".col-price").textContent, p95: r.querySelector(".col-q95").textContent }));
    const latest = await call("GET", `/v1/oracle/prices/latest?feed=${FEED}`);
    return row.round === String(latest.round_id) && row.price === latest.price && row.p95 === latest.quantiles["95"];
  });

  // Feeds without a price (classes nobody offers) are folded away until asked for.
  const visibleFeeds = () => page.$$eval("#feeds-body tr[data-feed]", (rows) => rows.filter((r) => r.offsetParent !== null).length);
  const allFeeds = (await call("GET", "/v1/oracle/feeds")).feeds.length;
  const folded = await visibleFeeds();
  assert.ok(folded >= 1 && folded < allFeeds, `${folded} of ${allFeeds} shown`);
  await page.click("#show-unpriced");
  assert.equal(await visibleFeeds(), allFeeds);
  await page.click("#show-unpriced");
  assert.equal(await visibleFeeds(), folded);

  // The history chart plots one point per priced round the API holds in the rounds it shows.
  await until("the history chart holds three rounds of the 2^10 feed", 30, async () => {
    const chart = await chartData(page, "#history-chart");
    return chart.feed === FEED && Number(chart.rounds) >= 3;
  });
  const shown = await chartData(page, "#history-chart");
  const history = await call("GET", `/v1/oracle/history?feed=${FEED}&from=${encodeURIComponent(new Date(now - 3_600_000).toISOString())}&limit=1000`);
  const inView = history.rounds.filter((r) => r.round_id >= Number(shown.firstRound) && r.round_id <= Number(shown.lastRound));
  assert.ok(inView.length >= 2, JSON.stringify(shown));
  assert.equal(Number(shown.rounds), inView.length, "one x value per round");
  assert.equal(Number(shown.points), inView.filter((r) => r.price !== null).length, "one point per priced round");
  assert.equal(await page.$$eval("#history-chart canvas", (c) => c.length), 1);

  // The curve: a point per tenor that has a price.
  await until("the curve chart plots the API's curve", 20, async () => {
    const curve = await call("GET", `/v1/oracle/curve?feed=${FEED}`);
    const chart = await chartData(page, "#curve-chart");
    const priced = curve.points.filter((p) => p.price !== null).length;
    return chart.round === String(curve.round_id) && Number(chart.points) === priced && priced >= 1;
  });

  // The book: depth per class, one point per price level, capacity summed.
  await until("the book's two classes", 20, async () => (await page.$$(".book-class")).length === 2);
  const depth10 = await chartData(page, `.book-class[data-class="${FEED}"] .depth`);
  assert.equal(depth10.points, "3", "0.008, 0.01 and 0.012");
  assert.equal(depth10.capacity, String(360 + 360 + 720));
  const depth12 = await chartData(page, '.book-class[data-class="groth16-bn254:hash-chain:12:600"] .depth');
  assert.equal(depth12.points, "2");
  assert.equal(depth12.capacity, "180");

  // Live: a new round moves the price row and the history chart, without a reload.
  const before = { row: await page.$eval(`#feeds-body tr[data-feed="${FEED}"]`, (r) => Number(r.dataset.round)), chart: await chartData(page, "#history-chart") };
  await until("a new round shown live", 20, async () => {
    const row = await page.$eval(`#feeds-body tr[data-feed="${FEED}"]`, (r) => Number(r.dataset.round));
    const chart = await chartData(page, "#history-chart");
    return row > before.row && Number(chart.lastRound) >= row && Number(chart.rounds) > Number(before.chart.rounds);
  });
  assert.equal(await page.evaluate(() => window.pcxNoReload), true, "the page was not reloaded");
  assert.equal(await page.$eval("#live", (n) => n.dataset.state), "live");

  // A wallet signs in through the nonce/sign flow: a new buyer without contracts.
  await page.click("#signin-wallet");
  await until("signed in with the wallet", 20, async () => (await page.$eval("#who", (n) => n.textContent)) === wallet.address);
  await until("no contracts yet", 10, async () => (await page.$eval("#contracts", (n) => n.textContent)).includes("No contracts yet"));
  await page.click("#signout");
  assert.equal(await page.isVisible("#signed-in"), false);
  assert.equal(await page.isVisible("#signin"), true);

  // A wrong API key is refused with the API's message; the right one shows the contract.
  await page.fill("#api-key", "pcx_not_a_key");
  await page.click("#signin-key");
  await until("the refusal shown", 10, async () => (await page.$eval("#signin-error", (n) => n.textContent)).length > 0);
  await page.fill("#api-key", buyer.api_key);
  await page.click("#signin-key");
  await until("signed in as the buyer", 20, async () => (await page.$eval("#who", (n) => n.textContent)) === "rollup");
  assert.equal(await page.$eval("#api-key", (n) => n.value), "", "the key does not stay in the form");
  assert.equal(await page.isVisible("#signin"), false, "no sign-in form while signed in");
  const timeline = `.contract[data-contract="${contract.contract_id}"] .timeline`;
  await until("the contract's three slots on the timeline", 20, async () => (await page.$$(`${timeline} .slot`)).length === 3);
  await page.screenshot({ path: join(shots, "market-page-early.png"), fullPage: true });

  // Slot 0: mallory claims and misses, alice (the backup) delivers. Slot 1: alice delivers as the
  // primary. Slot 2: no input, so unused (paid, take-or-pay). The page follows without a reload.
  const outcomes = () => page.$$eval(`${timeline} .slot`, (nodes) => nodes.map((n) => `${n.dataset.outcome}/${n.dataset.reason}`));
  await until("the timeline shows a failed-over, a delivered and an unused slot", 150, async () => {
    const seen = await outcomes();
    return seen.join(",") === "failed_over/delivered_by_backup,delivered/delivered_by_primary,unused/no_input";
  });
  const api = await call("GET", `/v1/contracts/${contract.contract_id}/slots`, { token: buyer.token });
  assert.deepEqual(api.slots.map((s) => `${s.state}/${s.reason}`), ["delivered/delivered_by_backup", "delivered/delivered_by_primary", "unused/no_input"]);
  assert.equal(api.slots[0].delivered_by, alice.account_id);
  await page.click(`${timeline} .slot[data-n="0"]`);
  const detail = await page.$eval(`.contract[data-contract="${contract.contract_id}"] .slot-detail`, (n) => n.textContent);
  assert.match(detail, /Slot 0: failed over/);
  assert.match(detail, /by a backup, after the primary failed/);
  assert.match(detail, new RegExp(`delivered by ${alice.account_id.slice(0, 8)}`));

  // Recent deliveries: both, the failed-over one named so.
  await until("recent deliveries listed", 20, async () => {
    const rows = await page.$$eval("#recent-body tr[data-outcome]", (r) => r.map((n) => n.dataset.outcome));
    return rows.includes("failed_over") && rows.includes("delivered");
  });

  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(shots, "market-page.png"), fullPage: true });
  assert.deepEqual(problems, [], "no script error and no Content-Security-Policy violation");
  assert.deepEqual(refused, ["401 /v1/auth/token"], "the wrong API key is the only request refused");
  await page.close();
});

test("the page's files are embedded and revalidated, and the API's 404 answers a missing one", async (t) => {
  if (!existsSync(browserPath)) {
    t.skip("no Chromium: the server was not started");
    return;
  }
  const page = await fetch(`${base}/`);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  const etag = page.headers.get("etag");
  assert.match(etag, /^"[0-9a-f]{32}"$/);
  assert.equal((await fetch(`${base}/`, { headers: { "If-None-Match": etag } })).status, 304);
  const script = await fetch(`${base}/assets/uPlot.iife.min.js`);
  assert.equal(script.status, 200);
  assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(script.headers.get("x-content-type-options"), "nosniff");
  const missing = await fetch(`${base}/assets/nothing.js`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "route_not_found");
});

// A buyer's flow through the typed client against a real `pcx serve` (on a fresh database of the
// PostgreSQL server at PCX_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
// and a real prover agent: token, quote, contract, input, the delivered proof; and a signed price.
// The binary is PCX_BIN, default target/debug/pcx of this repository.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { pcxClient, idempotencyKey, type PcxClient } from "../src/index.js";

const root = resolve(import.meta.dirname, "../../../../..");
const pcx = process.env.PCX_BIN ?? join(root, "target/debug/pcx");
const server = process.env.PCX_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const database = `pcx_ts_client_${Date.now()}_${process.pid}`;
const adminKey = `pcx_admin_ts_${crypto.randomUUID().replaceAll("-", "")}`;
const dataDir = mkdtempSync(join(tmpdir(), "pcx-ts-client-"));
const children: ChildProcess[] = [];
let base = "";

function psql(sql: string): void {
  execFileSync("psql", ["-q", "-v", "ON_ERROR_STOP=1", server, "-c", sql], { stdio: "pipe" });
}

function databaseUrl(): string {
  const url = new URL(server);
  url.pathname = `/${database}`;
  return url.toString();
}

async function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

function start(args: string[], env: Record<string, string>): ChildProcess {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PCX_") && k !== "DATABASE_URL"));
  const child = spawn(pcx, args, { env: { ...clean, PCX_LOG: "warn", ...env }, stdio: ["ignore", "ignore", "inherit"] });
  children.push(child);
  return child;
}

async function until<T>(what: string, seconds: number, probe: () => Promise<T | undefined>): Promise<T> {
  const giveUp = Date.now() + seconds * 1000;
  for (;;) {
    const got = await probe().catch(() => undefined);
    if (got !== undefined) return got;
    if (Date.now() > giveUp) throw new Error(`${what}: not within ${seconds} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The `data` of an answer, failing the test with the API's error envelope otherwise. */
function ok<T>(answer: { data?: T; error?: unknown; response: Response }): T {
  assert.ok(answer.data !== undefined, `${answer.response.status}: ${JSON.stringify(answer.error)}`);
  return answer.data;
}

before(async () => {
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
  });
  await until("pcx serve healthy", 60, async () => ((await fetch(`${base}/health`)).ok ? true : undefined));
});

after(() => {
  for (const child of children) child.kill("SIGKILL");
  try {
    psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  } catch {
    // Left for the next run's clean-up.
  }
  rmSync(dataDir, { recursive: true, force: true });
});

async function account(anonymous: PcxClient, admin: PcxClient, name: string, role: "buyer" | "prover", deposit: string) {
  const made = ok(await anonymous.POST("/v1/accounts", { body: { name, role } }));
  ok(await admin.POST("/v1/admin/deposits", { body: { account_id: made.account_id, amount: deposit }, headers: { "Idempotency-Key": idempotencyKey() } }));
  const { token } = ok(await anonymous.POST("/v1/auth/token", { body: { api_key: made.api_key } }));
  return { ...made, client: pcxClient({ baseUrl: base, token }) };
}

test("a buyer buys proofs, gets one delivered and verified, and reads a signed price", async () => {
  const anonymous = pcxClient({ baseUrl: base });
  const { token: adminToken } = ok(await anonymous.POST("/v1/auth/token", { body: { api_key: adminKey } }));
  const admin = pcxClient({ baseUrl: base, token: adminToken });
  const proofClass = { system: "groth16-bn254", circuit: "hash-chain", size_log2: 10, deadline_secs: 60 } as const;

  // A prover with stake, an offer, and its agent.
  const prover = await account(anonymous, admin, "alice", "prover", "1000");
  ok(await prover.client.POST("/v1/provers/stake", { body: { amount: "500" }, headers: { "Idempotency-Key": idempotencyKey() } }));
  const now = Date.now();
  ok(await prover.client.POST("/v1/offers", {
    body: {
      proof_class: proofClass,
      window_start: new Date(now).toISOString(),
      window_end: new Date(now + 86_400_000).toISOString(),
      proofs_per_hour: 360,
      price_per_proof: "0.01",
    },
    headers: { "Idempotency-Key": idempotencyKey() },
  }));
  start(["prover", "--exchange", base, "--sizes", "10", "--claim-wait-secs", "2", "--workers", "1", "--backend", "cpu",
         "--keys-dir", join(dataDir, "agent-keys")], { PCX_API_KEY: prover.api_key });

  // The buyer: a quote for two slots 10 s apart, the contract, the inputs.
  const buyer = await account(anonymous, admin, "rollup", "buyer", "10");
  const start0 = new Date(Math.ceil((Date.now() + 8_000) / 1000) * 1000);
  const quote = ok(await buyer.client.POST("/v1/quotes", {
    body: {
      proof_class: proofClass,
      schedule: { start: start0.toISOString(), end: new Date(start0.getTime() + 20_000).toISOString(), every_secs: 10 },
      redundancy: 0,
    },
  }));
  assert.equal(quote.slot_count, 2);
  const contract = ok(await buyer.client.POST("/v1/contracts", { body: { quote_id: quote.quote_id }, headers: { "Idempotency-Key": idempotencyKey() } }));
  for (const n of [0, 1]) {
    ok(await buyer.client.PUT("/v1/contracts/{id}/slots/{n}/input", {
      params: { path: { id: contract.contract_id, n } },
      body: { public_input: String(4242 + n) },
    }));
  }

  // Both slots delivered; the proof of the first, verified by the exchange, readable.
  const slots = await until("both slots delivered", 90, async () => {
    const page = ok(await buyer.client.GET("/v1/contracts/{id}/slots", { params: { path: { id: contract.contract_id } } }));
    return page.slots.every((s) => s.state === "delivered") && page.slots.length === 2 ? page.slots : undefined;
  });
  assert.equal(slots[0].reason, "delivered_by_primary");
  assert.equal(slots[0].delivered_by, prover.account_id);
  const proof = ok(await buyer.client.GET("/v1/contracts/{id}/slots/{n}/proof", { params: { path: { id: contract.contract_id, n: 0 } } }));
  assert.ok(proof.public_inputs.includes("4242"), JSON.stringify(proof.public_inputs));
  assert.match(proof.proof, /^0x[0-9a-f]+$/);

  // A signed price of the feed the offer made.
  const feeds = ok(await anonymous.GET("/v1/oracle/feeds"));
  const feed = feeds.feeds.find((f) => f.proof_class.circuit === "hash-chain" && f.proof_class.size_log2 === 10 && f.proof_class.deadline_secs === 60);
  assert.ok(feed, JSON.stringify(feeds));
  const latest = await until("a signed round", 30, async () => {
    const round = ok(await anonymous.GET("/v1/oracle/prices/latest", { params: { query: { feed: feed.feed_id } } }));
    return round.price ? round : undefined;
  });
  assert.match(latest.signature, /^0x[0-9a-f]{130}$/);
  assert.equal((latest.typed_data as { primaryType?: string }).primaryType, "PriceRound");
  const signer = ok(await anonymous.GET("/v1/oracle/signer"));
  assert.match(signer.address, /^0x[0-9a-fA-F]{40}$/);

  // Errors come back typed: the envelope's code.
  const refused = await buyer.client.POST("/v1/quotes", { body: { proof_class: proofClass, schedule: { start: start0.toISOString(), end: start0.toISOString(), every_secs: 10 } } });
  assert.equal(refused.response.status, 422);
  assert.equal(refused.error?.error.code, "invalid_schedule");
});

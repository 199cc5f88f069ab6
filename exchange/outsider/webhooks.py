#!/usr/bin/env python3
"""pcx's webhooks as an outsider sees them: HTTP and processes only.

The tool starts `pcx serve` on a fresh database of the machine's PostgreSQL (as `harness.Server`
does, but managed here, so that it can be killed with SIGKILL and started again on the same port,
database and data directory: the generated webhook key in `<data dir>/secrets/webhook_key` seals
the endpoints' secrets and must be the same after the restart). Beside it, a receiver: a threading
HTTP server on 127.0.0.1 with one path per endpoint that verifies every request with the Standard
Webhooks library (`standardwebhooks` from PyPI), records it, deduplicates by `webhook-id`, and can
be told to answer 503.

A buyer registers its endpoint for every buyer event, two provers theirs for every prover event:
mallory (`pcx prover --fault miss`, the cheaper, so the primary: it claims and never delivers) and
bob (honest, the backup). A contract of 6 slots every 10 s with one backup, inputs posted. While it
settles:

  receiver outage  the receiver answers 503 for 15 s (slot 0's failover and delivery, slot 1's offer)
  kill -9          later the receiver refuses again until events of the next failover are held, the
                   exchange is killed with SIGKILL, the receiver comes back 1 s later, and the exchange
                   is started again 5 s after the kill (same port, database, data directory); with a
                   single process the restarted one takes the worker lease (and so the delivery loop
                   and the scheduler) only once the dead one's lease ran out (PCX_WORKER_LEASE_SECS,
                   15 s by default, not changed here)

After the contract: every request verified by the library with its own endpoint's secret (and by no
other's; forged, re-signed and stale controls refused); per slot, the buyer's events are the slot's
final state from GET /v1/contracts/{id}/slots (`slot.failed_over` for each failure charged to a
prover while there was time for the next, then `slot.delivered` / `slot.missed` with the slot's
reason and prover), once each after dedup, in causal order, `contract.completed` last; the provers'
events are their jobs (job.offered, then job.expired / stake.slashed for a failure, payment.received
for a delivery), consistent with the buyer's failovers, and the amounts of stake.slashed /
payment.received are the lines of their ledgers (GET /v1/accounts/me/ledger, by reference); nothing
invented, nothing lost; an event of a slot is never sent before the earlier ones of that slot were
accepted; GET /v1/webhooks/{id}/deliveries shows the 503 attempts of the outage, each followed by
a 200, and matches what the receiver saw. Registration refusals: an ftp:// URL, the exchange's own
URL (as 127.0.0.1:port and localhost:port), and, separately, the same exchange spelt 0.0.0.0:port and
[::ffff:127.0.0.1]:port; a prover subscribing to slot.delivered. And an endpoint on an IPv6 literal
([::1], a second receiver there) is delivered contract.completed.

Figures: latency from each event's `timestamp` (its transition) to its arrival when nothing was in
the way (p50/p99/max, per type), when the events held by the outage arrived after the receiver came
back, when the events pending at the kill arrived after the restart, and attempts per event.

Settings: PCX_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true, PCX_WEBHOOK_TICK_MS=200, PCX_MIN_CADENCE_SECS=10,
PCX_SETTLEMENT_TICK_MS=200, PCX_DEV_KEYS=true, PCX_OFFER_CAPACITY_CHECK=off, PCX_ORACLE_TICK_MS=0,
rate limits out of the way; everything else pcx's defaults.

Usage (from the repository root, with `requests` and `standardwebhooks` installed):

    python3 exchange/outsider/webhooks.py --pcx target/release/pcx [--keep-logs]

Prints a report line per check and a summary; exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from standardwebhooks.webhooks import Webhook

from harness import (ADMIN_KEY, NO_RATE_LIMITS, RESULTS, ROOT, account, admin_database_url, call, free_port, note,
                     offer, parse_time, percentile, psql, report, rfc3339, stamp, token, with_database)

EVERY = 10
SLOTS = 6
DEADLINE = 20
CLASS = {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 10, "deadline_secs": DEADLINE}
STAKE = "1000"
BUYER_DEPOSIT = "10"
OUTAGE_AT, OUTAGE_SECS = 5.0, 15.0  # receiver outage: from the contract's start + 5 s, for 15 s
PREKILL_AT = 27.0  # the receiver refuses from here until events are held, then the kill
DOWN_SECS = 5.0  # the exchange is started again this long after the kill

BUYER_EVENTS = ["slot.delivered", "slot.failed_over", "slot.missed", "slot.unused", "contract.suspended",
                "contract.resumed", "contract.completed", "escrow.low"]
PROVER_EVENTS = ["job.offered", "job.expired", "stake.slashed", "payment.received"]
TIMEOUTS = ("ack_timeout", "lease_expired", "deadline_passed")

def msg_id(event_id: str) -> str:
    return "msg_" + uuid.UUID(event_id).hex


def stats(values: list[float], unit: str = "s", digits: int = 2) -> str:
    if not values:
        return "none"
    return (f"p50 {percentile(values, 50):.{digits}f} {unit}, p99 {percentile(values, 99):.{digits}f} {unit}, "
            f"max {max(values):.{digits}f} {unit} (n={len(values)})")


# --- the receiver -----------------------------------------------------------------------------

@dataclass
class Request:
    at: float
    endpoint: str
    msg_id: str
    header_ts: str
    headers: dict
    body: bytes
    verified: bool
    error: str
    others_verify: list[str]
    answered: int


@dataclass
class Received:
    """One event (one webhook-id at one endpoint) as the receiver saw it."""
    endpoint: str
    msg_id: str
    type: str
    timestamp: float
    data: dict
    first_request: float
    accepted_at: float | None = None
    requests: int = 0
    refused: int = 0
    accepted: int = 0
    bodies: set = field(default_factory=set)

    @property
    def slot(self):
        return self.data.get("slot")


class Receiver:
    """Webhook endpoints on 127.0.0.1: POST /<name>, verified with <name>'s secret."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.lock = threading.Lock()
        self.secrets: dict[str, str] = {}
        self.requests: list[Request] = []
        self.down = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                at = time.time()
                receiver.take(self, at, body)

            def log_message(self, *_args):
                pass

        class Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self.server = Server((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/{name}"

    def take(self, handler: BaseHTTPRequestHandler, at: float, body: bytes) -> None:
        name = handler.path.strip("/")
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.lock:
            secrets = dict(self.secrets)
            down = self.down
        verified, error = False, ""
        secret = secrets.get(name)
        if secret is None:
            error = f"no endpoint {handler.path!r}"
        else:
            try:
                Webhook(secret).verify(body, headers)
                verified = True
            except Exception as err:  # the library raises its own and decoding errors
                error = f"{type(err).__name__}: {err}"
        others = [n for n, s in secrets.items() if n != name and verifies(s, body, headers)]
        status = 503 if down else (200 if verified else 400)
        with self.lock:
            self.requests.append(Request(at, name, headers.get("webhook-id", ""), headers.get("webhook-timestamp", ""),
                                         headers, body, verified, error, others, status))
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def set_down(self, down: bool) -> None:
        with self.lock:
            self.down = down

    def snapshot(self) -> list[Request]:
        with self.lock:
            return list(self.requests)

    def events(self) -> dict[tuple[str, str], Received]:
        """Every verified event by (endpoint, webhook-id), deduplicated."""
        out: dict[tuple[str, str], Received] = {}
        for r in self.snapshot():
            if not r.verified:
                continue
            key = (r.endpoint, r.msg_id)
            ev = out.get(key)
            if ev is None:
                body = json.loads(r.body)
                ev = out[key] = Received(r.endpoint, r.msg_id, body["type"], parse_time(body["timestamp"]),
                                         body["data"], r.at)
            ev.requests += 1
            ev.bodies.add(r.body)
            if r.answered == 503:
                ev.refused += 1
            else:
                ev.accepted += 1
                if ev.accepted_at is None:
                    ev.accepted_at = r.at
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def verifies(secret: str, body: bytes, headers: dict) -> bool:
    try:
        Webhook(secret).verify(body, headers)
        return True
    except Exception:
        return False


# --- the exchange -----------------------------------------------------------------------------

class Exchange:
    """`pcx serve` on a database and a data directory that outlive its process."""

    def __init__(self, pcx: Path, root: Path):
        self.pcx = pcx
        self.admin_url = admin_database_url()
        self.db_name = f"pcx_webhooks_{os.getpid()}"
        self.database_url = with_database(self.admin_url, self.db_name)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = root / "data"
        self.data_dir.mkdir()
        self.log_path = root / "serve.log"
        self.process: subprocess.Popen | None = None
        self.log = None
        self.starts = 0
        self.unexpected_exits: list[str] = []
        psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.db_name}")
        psql(self.admin_url, f"CREATE DATABASE {self.db_name}")
        self.created_db = True
        env = {k: v for k, v in os.environ.items() if not k.startswith("PCX_") and k != "DATABASE_URL"}
        env.update(NO_RATE_LIMITS)
        env.update(
            DATABASE_URL=self.database_url,
            PCX_LISTEN=f"127.0.0.1:{self.port}",
            PCX_DATA_DIR=str(self.data_dir),
            PCX_ADMIN_API_KEY=ADMIN_KEY,
            PCX_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
            PCX_WEBHOOK_TICK_MS="200",
            PCX_MIN_CADENCE_SECS="10",
            PCX_SETTLEMENT_TICK_MS="200",
            PCX_DEV_KEYS="true",
            PCX_OFFER_CAPACITY_CHECK="off",
            PCX_ORACLE_TICK_MS="0",
            PCX_LOG="info",
        )
        self.env = env

    def start(self) -> float:
        self.check_alive()
        self.log = open(self.log_path, "a")
        self.starts += 1
        t = time.time()
        self.log.write(f"===== webhooks.py: start {self.starts} at {stamp(t)} =====\n")
        self.log.flush()
        self.process = subprocess.Popen([str(self.pcx), "serve"], env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        return t

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.unexpected_exits.append(f"pcx serve exited by itself with {self.process.returncode} "
                                         f"(start {self.starts})")
            self.process = None

    def wait_healthy(self, within: float) -> float:
        started = time.time()
        while time.time() - started < within:
            self.check_alive()
            if self.process is None:
                raise SystemExit(f"pcx serve exited; log: {self.log_path}\n{self.log_tail()}")
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    return time.time()
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SystemExit(f"pcx serve not healthy within {within:.0f} s; log: {self.log_path}\n{self.log_tail()}")

    def kill9(self) -> float:
        self.check_alive()
        t = time.time()
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None
        if self.log:
            self.log.write(f"===== webhooks.py: SIGKILL at {stamp(t)} =====\n")
            self.log.close()
            self.log = None
        return t

    def stop(self) -> None:
        self.check_alive()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.log:
            self.log.close()
            self.log = None

    def destroy(self) -> None:
        self.stop()
        if self.created_db:
            try:
                psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
            except subprocess.CalledProcessError as err:
                print(f"dropping {self.db_name}: {err.stderr}", flush=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class HealthWatcher:
    """GET /health every 100 ms: when the exchange answers, and whether it holds the worker lease."""

    def __init__(self, base: str):
        self.base = base
        self.samples: list[tuple[float, int, bool | None]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.time()
            status, holds = 0, None
            try:
                r = requests.get(self.base + "/health", timeout=1, headers={"Connection": "close"})
                status = r.status_code
                holds = r.json().get("holds_worker_lease") if status == 200 else None
            except (requests.RequestException, ValueError):
                pass
            with self.lock:
                self.samples.append((t0, status, holds))
            time.sleep(max(0.0, 0.1 - (time.time() - t0)))

    def first(self, since: float, pred) -> float | None:
        with self.lock:
            return next((t for t, s, h in self.samples if t >= since and pred(s, h)), None)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=3)


# --- HTTP helpers -----------------------------------------------------------------------------

def get_json(base: str, path: str, bearer: str | None = None, tries: int = 20):
    last = None
    for _ in range(tries):
        try:
            r = requests.get(base + path, headers={"Authorization": f"Bearer {bearer}"} if bearer else {}, timeout=30)
            if r.status_code == 200:
                return r.json()
            last = f"{r.status_code} {r.text[:300]}"
        except requests.RequestException as err:
            last = type(err).__name__
        time.sleep(0.5)
    raise SystemExit(f"GET {path}: {last}")


def ledger(base: str, bearer: str) -> list[dict]:
    lines, before = [], None
    while True:
        page = get_json(base, "/v1/accounts/me/ledger?limit=500" + (f"&before={before}" if before else ""), bearer)
        lines += page["entries"]
        before = page.get("next_before")
        if not before:
            return lines


def attempts_of(base: str, bearer: str, webhook_id: str) -> list[dict]:
    out, before = [], None
    while True:
        page = get_json(base, f"/v1/webhooks/{webhook_id}/deliveries?limit=500" + (f"&before={before}" if before else ""),
                        bearer)
        out += page["attempts"]
        before = page.get("next_before")
        if not before:
            return sorted(out, key=lambda a: a["attempt_id"])


def register(base: str, bearer: str, url: str, events: list[str]) -> requests.Response:
    return requests.post(base + "/v1/webhooks", json={"url": url, "events": events},
                         headers={"Authorization": f"Bearer {bearer}"}, timeout=30)


def error_code(r: requests.Response) -> str | None:
    try:
        return r.json().get("error", {}).get("code")
    except (ValueError, AttributeError):
        return None


def error_message(r: requests.Response) -> str:
    try:
        return r.json().get("error", {}).get("message", "")
    except (ValueError, AttributeError):
        return r.text[:200]


# --- the rig ----------------------------------------------------------------------------------

class Rig:
    def __init__(self, pcx: Path, keep_logs: bool):
        self.pcx = pcx
        self.keep_logs = keep_logs
        self.root = Path(tempfile.mkdtemp(prefix="pcx-webhooks-"))
        self.exchange: Exchange | None = None
        self.receiver: Receiver | None = None
        self.receiver6: Receiver | None = None
        self.health: HealthWatcher | None = None
        self.agents: list[subprocess.Popen] = []
        self.agent_logs: list[Path] = []
        self.agent_files = []

    def start_agent(self, name: str, api_key: str, fault: str | None) -> Path:
        log_path = self.root / f"agent-{name}.log"
        log = open(log_path, "w")
        self.agent_files.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PCX_")}
        env.update(PCX_API_KEY=api_key, PCX_LOG="info")
        command = [str(self.pcx), "prover", "--exchange", self.exchange.base, "--sizes", "10", "--claim-wait-secs", "2",
                   "--workers", "1", "--backend", "cpu", "--keys-dir", str(self.root / f"keys-{name}")]
        if fault:
            command += ["--fault", fault]
        self.agents.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        self.agent_logs.append(log_path)
        return log_path

    def close(self) -> None:
        for agent in self.agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
        for agent in self.agents:
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        for f in self.agent_files:
            f.close()
        if self.health is not None:
            self.health.close()
        if self.exchange is not None:
            self.exchange.destroy()
        for receiver in (self.receiver, self.receiver6):
            if receiver is not None:
                receiver.close()
        if self.keep_logs:
            print(f"logs kept in {self.root}", flush=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


# --- the scenario -----------------------------------------------------------------------------

def run(pcx: Path, keep_logs: bool) -> None:
    rig = Rig(pcx, keep_logs)
    try:
        scenario(rig)
    finally:
        rig.close()


def scenario(rig: Rig) -> None:
    t_script = time.time()
    rig.receiver = receiver = Receiver()
    rig.exchange = ex = Exchange(rig.pcx, rig.root)
    ex.start()
    ex.wait_healthy(120)
    base = ex.base
    rig.health = health = HealthWatcher(base)
    key_file = ex.data_dir / "secrets" / "webhook_key"
    key_before = key_file.read_bytes() if key_file.exists() else None
    note(f"pcx serve at {base} (data dir {ex.data_dir}, database {ex.db_name}); receiver on 127.0.0.1:{receiver.port}")

    admin = token(base, ADMIN_KEY)
    provers = {}
    for name, price in (("mallory", "0.008"), ("bob", "0.01")):
        p = account(base, admin, name, "prover", STAKE)
        call(base, "POST", "/v1/provers/stake", p["token"], {"amount": STAKE})
        offer(base, p["token"], 360, price, days=2, proof_class=CLASS)
        provers[name] = p
    buyer = account(base, admin, "rollup", "buyer", BUYER_DEPOSIT)
    mallory, bob = provers["mallory"], provers["bob"]
    names = {mallory["account_id"]: "mallory", bob["account_id"]: "bob"}

    # Endpoints, and the refusals.
    hooks = {}
    for name, who, events in (("buyer", buyer, BUYER_EVENTS), ("mallory", mallory, PROVER_EVENTS),
                              ("bob", bob, PROVER_EVENTS)):
        r = register(base, who["token"], receiver.url(name), events)
        if r.status_code != 201:
            raise SystemExit(f"registering {name}'s endpoint: {r.status_code} {r.text}")
        body = r.json()
        hooks[name] = {"id": body["webhook_id"], "secret": body["secret"], "token": who["token"], "view": body}
        with receiver.lock:
            receiver.secrets[name] = body["secret"]
    check_refusals(base, buyer, mallory, receiver)
    own = register_own_spellings(base, buyer)
    v6 = register_ipv6(rig, base, buyer)

    agent_logs = [rig.start_agent("mallory", mallory["api_key"], "miss"), rig.start_agent("bob", bob["api_key"], None)]
    give_up = time.time() + 240
    while not all("serving: claiming jobs" in log.read_text(errors="replace") for log in agent_logs):
        for agent, log in zip(rig.agents, agent_logs):
            if agent.poll() is not None:
                raise SystemExit(f"agent exited with {agent.returncode}: {log.read_text()[-2000:]}")
        if time.time() > give_up:
            raise SystemExit(f"agents not serving within 240 s; logs {agent_logs}")
        time.sleep(0.5)
    note(f"agents serving {time.time() - t_script:.0f} s after the start (mallory: --fault miss)")

    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=8)
    end = start + timedelta(seconds=EVERY * SLOTS)
    quote = call(base, "POST", "/v1/quotes", buyer["token"], {
        "proof_class": CLASS, "redundancy": 1,
        "schedule": {"start": rfc3339(start), "end": rfc3339(end), "every_secs": EVERY}})
    contract = call(base, "POST", "/v1/contracts", buyer["token"], {"quote_id": quote["quote_id"]})
    cid = contract["contract_id"]
    for n in range(SLOTS):
        call(base, "PUT", f"/v1/contracts/{cid}/slots/{n}/input", buyer["token"], {"public_input": str(n + 5)},
             expect=(200,))
    first = get_json(base, f"/v1/contracts/{cid}/slots?limit={SLOTS}", buyer["token"])["slots"][0]
    note(f"contract {cid}: {SLOTS} slots every {EVERY} s from {stamp(start.timestamp())}, deadline {DEADLINE} s, "
         f"primary {names.get(first['primary'])}, backups {[names.get(b) for b in first['backups']]}, "
         f"price {contract.get('price_per_proof')}")
    S = start.timestamp()
    if first["primary"] != mallory["account_id"] or first["backups"] != [bob["account_id"]]:
        raise SystemExit(f"the quote did not make mallory the primary and bob the backup: {first}")

    # --- the receiver's outage ---
    sleep_until(S + OUTAGE_AT)
    receiver.set_down(True)
    t_down = time.time()
    sleep_until(t_down + OUTAGE_SECS)
    receiver.set_down(False)
    t_up = time.time()
    note(f"receiver answered 503 from {stamp(t_down)} to {stamp(t_up)}")

    # --- the kill ---
    sleep_until(S + PREKILL_AT)
    receiver.set_down(True)
    t_down2 = time.time()
    give_up = t_down2 + 12
    while time.time() < give_up:
        refused = {r.msg_id for r in receiver.snapshot() if r.at >= t_down2 and r.answered == 503}
        if len(refused) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    t_kill = ex.kill9()
    held_at_kill = {r.msg_id for r in receiver.snapshot() if r.at >= t_down2 and r.answered == 503}
    note(f"receiver refusing from {stamp(t_down2)}; {len(held_at_kill)} events refused; kill -9 at {stamp(t_kill)}")
    sleep_until(t_kill + 1)
    receiver.set_down(False)
    t_up2 = time.time()
    sleep_until(t_kill + DOWN_SECS)
    t_restart = ex.start()
    t_healthy = ex.wait_healthy(60)
    give_up = time.time() + 60
    t_lease = None
    while time.time() < give_up and t_lease is None:
        t_lease = health.first(t_restart, lambda s, h: s == 200 and h is True)
        time.sleep(0.1)
    note(f"receiver back at {stamp(t_up2)}; pcx serve started again at {stamp(t_restart)}, healthy at "
         f"{stamp(t_healthy)}, holds the worker lease at {stamp(t_lease)}")
    key_after = key_file.read_bytes() if key_file.exists() else None

    # --- every slot final, the contract completed, deliveries settled ---
    give_up = time.time() + 150
    while True:
        slots = get_json(base, f"/v1/contracts/{cid}/slots?limit={SLOTS}", buyer["token"])["slots"]
        status = get_json(base, f"/v1/contracts/{cid}", buyer["token"]).get("status")
        if len(slots) == SLOTS and all(s["state"] not in ("scheduled", "proving") for s in slots) and status == "completed":
            break
        if time.time() > give_up:
            raise SystemExit(f"slots not final / contract not completed ({status}) 150 s after: "
                             f"{[(s['n'], s['state']) for s in slots]}")
        time.sleep(0.5)
    t_final = time.time()
    give_up = time.time() + 120
    while True:
        attempts = {name: attempts_of(base, h["token"], h["id"]) for name, h in hooks.items()}
        pending = [a for rows in attempts.values() for a in rows if a["delivery_state"] == "pending"]
        reqs = receiver.snapshot()
        quiet = not reqs or time.time() - max(r.at for r in reqs) > 3
        completed = any(e.type == "contract.completed" and e.accepted_at for e in receiver.events().values())
        if not pending and quiet and completed:
            break
        if time.time() > give_up:
            note(f"deliveries not settled 120 s after the contract: {len(pending)} pending, completed heard: {completed}")
            break
        time.sleep(1)
    note(f"every slot final and the contract completed at {stamp(t_final)}; deliveries settled at {stamp(time.time())}")

    w = {
        "S": S, "t_down": t_down, "t_up": t_up, "t_down2": t_down2, "t_kill": t_kill, "t_up2": t_up2,
        "t_restart": t_restart, "t_healthy": t_healthy, "t_lease": t_lease, "held_at_kill": held_at_kill,
    }
    events = receiver.events()
    requests_seen = receiver.snapshot()
    check_own_spellings(base, buyer, own)
    check_ipv6(rig, base, buyer, v6)
    check_signatures(receiver, requests_seen, hooks)
    expect = check_buyer(base, buyer, cid, slots, events, names)
    check_provers(cid, slots, events, names, expect)
    check_amounts(base, cid, slots, events, provers)
    check_order(events, requests_seen, cid)
    check_deliveries(hooks, attempts, events, requests_seen, w)
    figures(events, attempts, requests_seen, w)
    panics = [line.strip() for line in ex.log_text().splitlines() if "panicked" in line]
    internal = [ANSI.sub("", line).strip()[-200:] for line in ex.log_text().splitlines() if "internal error" in line]
    ex.check_alive()
    agent_exits = [f"agent {i} exited {a.returncode}" for i, a in enumerate(rig.agents) if a.poll() is not None]
    report("processes", not panics and not ex.unexpected_exits and not agent_exits and key_before == key_after
           and key_before is not None and not internal,
           f"pcx serve started {ex.starts} times (one kill -9); the generated webhook key "
           f"{'the same after the restart' if key_before == key_after and key_before else 'CHANGED or missing'}; "
           f"panics: {panics[:3] or 'none'}; `internal error` lines: {internal[:3] or 'none'}; exits we did not cause: "
           f"{ex.unexpected_exits + agent_exits or 'none'}; run {time.time() - t_script:.0f} s")
    if any(not held for _, held, _ in RESULTS):
        warn = [ANSI.sub("", line).strip()[-240:] for line in ex.log_text().splitlines()
                if " WARN " in ANSI.sub("", line) or " ERROR " in ANSI.sub("", line)]
        note("the exchange's WARN/ERROR lines (last 20):")
        for line in warn[-20:]:
            note("  " + line)


# --- checks -----------------------------------------------------------------------------------

def check_refusals(base: str, buyer: dict, prover: dict, receiver: Receiver) -> None:
    port = base.rsplit(":", 1)[1]
    cases = [
        ("buyer", "ftp://hooks.example.org/pcx", ["slot.delivered"], "invalid_webhook_url"),
        ("buyer", f"{base}/v1/accounts/me", ["slot.delivered"], "invalid_webhook_url"),
        ("buyer", f"http://localhost:{port}/hook", ["slot.delivered"], "invalid_webhook_url"),
        ("prover", receiver.url("prover-probe"), ["slot.delivered"], "invalid_webhook_events"),
    ]
    problems, seen = [], []
    for who, url, events, code in cases:
        bearer = buyer["token"] if who == "buyer" else prover["token"]
        r = register(base, bearer, url, events)
        seen.append(f"{who} {url} {events}: {r.status_code} {error_code(r)} ({error_message(r)[:70]})")
        if r.status_code != 422 or error_code(r) != code:
            problems.append(f"{url} {events}: {r.status_code} {r.text[:200]} (422 {code} expected)")
            if r.status_code == 201:
                requests.delete(f"{base}/v1/webhooks/{r.json()['webhook_id']}",
                                headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
    report("refusals", not problems, f"{'; '.join(seen)}; problems: {problems or 'none'}")



def register_own_spellings(base: str, buyer: dict) -> dict:
    """The same exchange, spelt otherwise: with private networks allowed only the own-address rule
    stands between an endpoint and the exchange itself. What is registered is kept for the
    contract's completion (to see where its deliveries land) and deleted afterwards."""
    port = base.rsplit(":", 1)[1]
    out = {"seen": [], "problems": [], "kept": []}
    for url in (f"http://0.0.0.0:{port}/v1/accounts", f"http://[::ffff:127.0.0.1]:{port}/v1/accounts"):
        host = url.split("//")[1].rsplit(":", 1)[0].strip("[]")
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                reaches = "a TCP connection to it reaches the exchange"
        except OSError as err:
            reaches = f"does not connect ({type(err).__name__})"
        r = register(base, buyer["token"], url, ["contract.completed"])
        out["seen"].append(f"{url} ({reaches}): registration {r.status_code} {error_code(r) or ''}")
        if r.status_code == 201:
            out["kept"].append((url, r.json()["webhook_id"]))
            if reaches.startswith("a TCP"):
                out["problems"].append(f"{url} registered (201) though it is the exchange")
    return out


def check_own_spellings(base: str, buyer: dict, own: dict) -> None:
    seen = list(own["seen"])
    for url, hook in own["kept"]:
        rows = attempts_of(base, buyer["token"], hook)
        answers = sorted({f"{a['status']} ({(a.get('error') or 'ok')[:60]})" for a in rows})
        seen.append(f"{url}: {len(rows)} attempts to deliver contract.completed, answered {answers or 'nothing yet'}")
        r = requests.delete(f"{base}/v1/webhooks/{hook}", headers={"Authorization": f"Bearer {buyer['token']}"}, timeout=10)
        if r.status_code != 200:
            seen.append(f"deleting it: {r.status_code}")
    report("own URL, other spellings", not own["problems"],
           f"PCX_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true; {'; '.join(seen)}; problems: {own['problems'] or 'none'}")


def register_ipv6(rig: Rig, base: str, buyer: dict) -> dict:
    """A second endpoint of the buyer for contract.completed, on an IPv6 literal ([::1], allowed
    with private networks): a receiver listens there too."""
    try:
        rig.receiver6 = Receiver("::1")
    except OSError as err:
        return {"skipped": f"no IPv6 loopback here ({err})"}
    url = rig.receiver6.url("buyer-v6")
    r = register(base, buyer["token"], url, ["contract.completed"])
    if r.status_code != 201:
        return {"url": url, "registered": f"{r.status_code} {r.text[:200]}"}
    with rig.receiver6.lock:
        rig.receiver6.secrets["buyer-v6"] = r.json()["secret"]
    return {"url": url, "id": r.json()["webhook_id"]}


def check_ipv6(rig: Rig, base: str, buyer: dict, v6: dict) -> None:
    if "skipped" in v6:
        report("IPv6 endpoint", True, v6["skipped"])
        return
    if "id" not in v6:
        report("IPv6 endpoint", False, f"{v6['url']}: registration answered {v6['registered']}")
        return
    give_up = time.time() + 10
    while time.time() < give_up and not any(e.accepted_at for e in rig.receiver6.events().values()):
        time.sleep(0.2)
    got = [e for e in rig.receiver6.events().values() if e.accepted_at]
    rows = attempts_of(base, buyer["token"], v6["id"])
    answers = sorted({f"{a['status']} ({(a.get('error') or 'ok')[:90]})" for a in rows})
    held = len(got) == 1 and got[0].type == "contract.completed" and any(a["status"] == 200 for a in rows)
    requests.delete(f"{base}/v1/webhooks/{v6['id']}", headers={"Authorization": f"Bearer {buyer['token']}"}, timeout=10)
    report("IPv6 endpoint", held,
           f"{v6['url']} (a receiver listening there) registered for contract.completed: received "
           f"{[e.type for e in got] or 'nothing'}; {len(rows)} attempts on record, answered {answers or 'none'}")


def check_signatures(receiver: Receiver, reqs: list[Request], hooks: dict) -> None:
    failed = [r for r in reqs if not r.verified]
    cross = [r for r in reqs if r.others_verify]
    ids = [r for r in reqs if not r.msg_id.startswith("msg_")]
    by_id: dict[tuple[str, str], set] = {}
    for r in reqs:
        by_id.setdefault((r.endpoint, r.msg_id), set()).add(r.body)
    changed = [k for k, bodies in by_id.items() if len(bodies) > 1]
    # Controls: the verifier refuses what it must.
    controls = {}
    sample = next((r for r in reqs if r.verified), None)
    if sample is not None:
        secret = hooks[sample.endpoint]["secret"]
        tampered = sample.body.replace(b'"slot"', b'"slot" ', 1) if b'"slot"' in sample.body else sample.body + b" "
        controls["tampered body"] = verifies(secret, tampered, sample.headers)
        other = next(h["secret"] for n, h in hooks.items() if n != sample.endpoint)
        controls["another endpoint's secret"] = verifies(other, sample.body, sample.headers)
        raw = base64.b64decode(secret[len("whsec_"):])
        old_ts = str(int(time.time()) - 600)
        sig = base64.b64encode(hmac.new(raw, f"{sample.msg_id}.{old_ts}.".encode() + sample.body,
                                        hashlib.sha256).digest()).decode()
        controls["correctly signed, 10 min old"] = verifies(
            secret, sample.body, {**sample.headers, "webhook-timestamp": old_ts, "webhook-signature": f"v1,{sig}"})
        now_ts = str(int(time.time()))
        sig = base64.b64encode(hmac.new(raw, f"{sample.msg_id}.{now_ts}.".encode() + sample.body,
                                        hashlib.sha256).digest()).decode()
        controls["re-signed now (positive control)"] = not verifies(
            secret, sample.body, {**sample.headers, "webhook-timestamp": now_ts, "webhook-signature": f"v1,{sig}"})
    wrong_controls = [k for k, wrong in controls.items() if wrong]
    held = bool(reqs) and not failed and not cross and not ids and not changed and sample is not None \
        and not wrong_controls
    per_endpoint = {}
    for r in reqs:
        per_endpoint[r.endpoint] = per_endpoint.get(r.endpoint, 0) + 1
    report("signatures", held,
           f"{len(reqs)} requests received ({per_endpoint}), verified by standardwebhooks with their endpoint's "
           f"secret: {len(reqs) - len(failed)}, failed: {len(failed)} {[(r.endpoint, r.error) for r in failed[:3]]}; "
           f"verified by another endpoint's secret: {len(cross)}; webhook-id not msg_…: {len(ids)}; retries with "
           f"another body: {len(changed)}; controls (refused, and the positive one passed) that went wrong: "
           f"{wrong_controls or 'none'} of {list(controls)}")


def check_buyer(base: str, buyer: dict, cid: str, slots: list[dict], events: dict, names: dict) -> dict:
    mine = sorted((e for e in events.values() if e.endpoint == "buyer"), key=lambda e: e.accepted_at or 1e18)
    problems: list[str] = []
    expect: dict[int, dict] = {}
    by_slot: dict[int, list[Received]] = {}
    other: list[Received] = []
    for e in mine:
        if e.accepted_at is None:
            problems.append(f"{e.type} {e.msg_id} never accepted")
        if e.data.get("contract_id") != cid:
            problems.append(f"{e.type} of contract {e.data.get('contract_id')}")
        if e.type.startswith("slot."):
            by_slot.setdefault(e.slot, []).append(e)
        else:
            other.append(e)
    outcome = {}
    for s in slots:
        n = s["n"]
        told = by_slot.pop(n, [])
        kinds = [e.type for e in told]
        outcome[f"{s['state']}/{s.get('reason')}"] = outcome.get(f"{s['state']}/{s.get('reason')}", 0) + 1
        terminal = {"delivered": "slot.delivered", "missed": "slot.missed", "unused": "slot.unused"}.get(s["state"])
        finals = [e for e in told if e.type in ("slot.delivered", "slot.missed", "slot.unused")]
        overs = [e for e in told if e.type == "slot.failed_over"]
        strange = [e.type for e in told if e.type not in ("slot.delivered", "slot.missed", "slot.unused", "slot.failed_over")]
        if strange:
            problems.append(f"slot {n}: {strange}")
        if terminal is None:
            problems.append(f"slot {n} ended {s['state']}")
        if [e.type for e in finals] != ([terminal] if terminal else []):
            problems.append(f"slot {n} ({s['state']}/{s.get('reason')}): told {kinds}")
        final = finals[0] if len(finals) == 1 else None
        if final is not None:
            if final.data.get("reason") != s.get("reason") or final.data.get("state") != s["state"]:
                problems.append(f"slot {n}: {final.type} says {final.data.get('state')}/{final.data.get('reason')}, "
                                f"the slot is {s['state']}/{s.get('reason')}")
            if s["state"] == "delivered":
                if final.data.get("delivered_by") != s.get("delivered_by"):
                    problems.append(f"slot {n}: delivered_by {final.data.get('delivered_by')} vs {s.get('delivered_by')}")
                r = requests.get(base + final.data.get("proof_url", "/none"),
                                 headers={"Authorization": f"Bearer {buyer['token']}"}, timeout=30)
                if r.status_code != 200:
                    problems.append(f"slot {n}: proof_url {final.data.get('proof_url')} answered {r.status_code}")
            if kinds and kinds[-1] != final.type:
                problems.append(f"slot {n}: {final.type} not last: {kinds}")
        fa = s.get("failed_attempts", 0)
        want = (fa, fa) if s["state"] == "delivered" else (max(0, fa - 1), fa)
        if not want[0] <= len(overs) <= want[1]:
            problems.append(f"slot {n} ({s['state']}, failed_attempts {fa}): {len(overs)} slot.failed_over")
        if overs:
            if overs[0].data.get("from") != s["primary"]:
                problems.append(f"slot {n}: the first failover is from {names.get(overs[0].data.get('from'))}")
            for a, b in zip(overs, overs[1:]):
                if b.data.get("from") != a.data.get("to") or b.data.get("attempt", 0) <= a.data.get("attempt", 0):
                    problems.append(f"slot {n}: failovers {a.data} then {b.data}")
            if s["state"] == "delivered" and overs[-1].data.get("to") != s.get("delivered_by") \
                    and s.get("reason") != "delivered_by_open_market":
                problems.append(f"slot {n}: failed over to {names.get(overs[-1].data.get('to'))}, delivered by "
                                f"{names.get(s.get('delivered_by'))}")
        expect[n] = {"slot": s, "overs": overs, "final": final}
    for n, told in by_slot.items():
        problems.append(f"events of slot {n}, which the contract does not have: {[e.type for e in told]}")
    completed = [e for e in other if e.type == "contract.completed"]
    extra = [e.type for e in other if e.type != "contract.completed"]
    if len(completed) != 1:
        problems.append(f"{len(completed)} contract.completed")
    if extra:
        problems.append(f"other contract events {extra}")
    if completed:
        c = completed[0]
        if any(e.timestamp > c.timestamp for e in mine):
            problems.append("an event stamped after contract.completed")
    seq = " | ".join(f"{n}: " + ",".join(e.type.split(".")[1] for e in (x["overs"] + ([x["final"]] if x["final"] else [])))
                     for n, x in sorted(expect.items()))
    if not completed:
        last = "missing"
    elif mine[-1] is completed[0]:
        last = "stamped last and arrived last"
    else:
        last = (f"stamped last, arrived before {mine[-1].type} of slot {mine[-1].slot} (another subject: pcx orders "
                f"per slot and per contract only)")
    report("buyer's events", not problems,
           f"{len(mine)} events after dedup; slots {outcome}; per slot {seq}; contract.completed {last}; "
           f"problems: {problems[:8] or 'none'}")
    return expect


def check_provers(cid: str, slots: list[dict], events: dict, names: dict, expect: dict) -> None:
    problems: list[str] = []
    jobs: dict[str, dict] = {}  # job id -> {prover, slot, offered, expired, slashed, paid}
    per_prover: dict[str, dict[str, int]] = {}
    for e in sorted((e for e in events.values() if e.endpoint in ("mallory", "bob")), key=lambda e: e.accepted_at or 1e18):
        per_prover.setdefault(e.endpoint, {}).setdefault(e.type, 0)
        per_prover[e.endpoint][e.type] += 1
        if e.data.get("contract_id") != cid or not isinstance(e.slot, int) or not 0 <= e.slot < SLOTS:
            problems.append(f"{e.endpoint}: {e.type} of {e.data.get('contract_id')}/{e.slot}")
            continue
        job_id = e.data.get("job_id")
        job = jobs.setdefault(job_id, {"prover": e.endpoint, "slot": e.slot, "seen": []})
        if job["prover"] != e.endpoint or job["slot"] != e.slot:
            problems.append(f"job {job_id} told to {job['prover']} (slot {job['slot']}) and {e.endpoint} (slot {e.slot})")
        job["seen"].append(e)
        if e.type in job:
            problems.append(f"{e.endpoint}: two {e.type} for job {job_id}")
        job[e.type] = e
    for job_id, job in jobs.items():
        order = [e.type for e in job["seen"]]
        if order[0] != "job.offered":
            problems.append(f"{job['prover']}: job {job_id} (slot {job['slot']}) told {order} without job.offered first")
        if "stake.slashed" in job and "job.expired" in job and order.index("stake.slashed") < order.index("job.expired"):
            problems.append(f"{job['prover']}: job {job_id}: {order}")
        if "stake.slashed" in job and "job.expired" not in job:
            problems.append(f"{job['prover']}: job {job_id} slashed without job.expired (only timeouts here)")
        if "payment.received" in job and ("job.expired" in job or "stake.slashed" in job):
            problems.append(f"{job['prover']}: job {job_id} paid and failed: {order}")
        offered = job.get("job.offered")
        if offered is not None:
            s = slots[job["slot"]]
            if abs(parse_time(offered.data.get("deadline", "1970-01-01T00:00:00Z")) - parse_time(s["deadline"])) > 0.001:
                problems.append(f"job {job_id}: deadline {offered.data.get('deadline')} vs the slot's {s['deadline']}")
    for s in slots:
        n = s["n"]
        x = expect.get(n, {})
        here = [j for j in jobs.values() if j["slot"] == n]
        expired = [j for j in here if "job.expired" in j]
        # A job the exchange's outage took is told (failure exchange_outage) but charges nobody: it is
        # not among the slot's failed attempts, and nothing is slashed for it.
        charged = [j for j in expired if j["job.expired"].data.get("failure") in TIMEOUTS]
        if len(charged) != s.get("failed_attempts", 0):
            problems.append(f"slot {n}: {len(charged)} charged job.expired, failed_attempts {s.get('failed_attempts')}")
        for j in expired:
            failure = j["job.expired"].data.get("failure")
            if failure not in TIMEOUTS + ("exchange_outage",):
                problems.append(f"slot {n}: job.expired with failure {failure}")
            if failure == "exchange_outage" and "stake.slashed" in j:
                problems.append(f"slot {n}: {j['prover']} slashed for a job the exchange's outage took")
        offers = sorted((j for j in here if "job.offered" in j), key=lambda j: j["job.offered"].data.get("attempt", 0))
        if s.get("reason") != "exchange_late":
            a0 = [j for j in offers if j["job.offered"].data.get("attempt") == 0]
            if len(a0) != 1 or a0[0]["prover"] != names.get(s["primary"]) or a0[0]["job.offered"].data.get("role") != "primary":
                problems.append(f"slot {n}: attempt 0 offered to {[(j['prover'], j['job.offered'].data.get('role')) for j in a0]}")
        elif offers:
            problems.append(f"slot {n} (exchange_late) has jobs {[(j['prover'], j['job.offered'].data.get('attempt')) for j in offers]}")
        # Each later job: the failover that named its prover, or the same prover again after a job the
        # exchange's outage took (job.expired with exchange_outage: not the prover's fault).
        overs = {e.data.get("attempt"): e for e in x.get("overs", [])}
        for j in offers:
            attempt = j["job.offered"].data.get("attempt", 0)
            if attempt == 0:
                continue
            over = overs.pop(attempt, None)
            before = [k for k in offers if k["job.offered"].data.get("attempt") == attempt - 1]
            if over is not None:
                if names.get(over.data.get("to")) != j["prover"] or over.data.get("role") != j["job.offered"].data.get("role"):
                    problems.append(f"slot {n}: attempt {attempt} offered to {j['prover']}, the failover says "
                                    f"{names.get(over.data.get('to'))} ({over.data.get('role')})")
                failed = jobs.get(over.data.get("failed_job_id"))
                if failed is None or failed["prover"] != names.get(over.data.get("from")):
                    problems.append(f"slot {n}: failover from job {over.data.get('failed_job_id')} no job of "
                                    f"{names.get(over.data.get('from'))}")
                elif over.data.get("failure") in TIMEOUTS and (
                        "job.expired" not in failed or failed["job.expired"].data.get("failure") != over.data.get("failure")):
                    problems.append(f"slot {n}: failover ({over.data.get('failure')}) of a job its prover was not told expired")
            elif not (before and before[0]["prover"] == j["prover"]
                      and ("job.expired" not in before[0]
                           or before[0]["job.expired"].data.get("failure") == "exchange_outage")):
                problems.append(f"slot {n}: attempt {attempt} to {j['prover']} without a failover to it nor an "
                                f"outage of its own previous job")
        for attempt, over in overs.items():
            if names.get(over.data.get("to")) is not None:
                problems.append(f"slot {n}: failover to {names.get(over.data.get('to'))} (attempt {attempt}) without its job.offered")
        paid = [j for j in here if "payment.received" in j]
        if s["state"] == "delivered":
            final = x.get("final")
            who = names.get(s.get("delivered_by"))
            if len(paid) != 1 or paid[0]["prover"] != who or (final and paid[0]["payment.received"].data.get("job_id")
                                                               != final.data.get("job_id")):
                problems.append(f"slot {n}: delivered by {who}, payment.received {[(j['prover']) for j in paid]}")
        elif paid:
            problems.append(f"slot {n} ({s['state']}): payment.received to {[j['prover'] for j in paid]}")
    silent = [f"{j['prover']} slot {j['slot']} attempt {j['job.offered'].data.get('attempt')}" for j in jobs.values()
              if "job.offered" in j and not any(k in j for k in ("job.expired", "stake.slashed", "payment.received"))]
    report("provers' events", not problems,
           f"by prover and type after dedup: {per_prover}; {len(jobs)} jobs; jobs told offered and never told how they "
           f"ended: "
           f"{silent or 'none'}; problems: {problems[:8] or 'none'}")


def check_amounts(base: str, cid: str, slots: list[dict], events: dict, provers: dict) -> None:
    problems = []
    figures = []
    for name, p in provers.items():
        lines = ledger(base, p["token"])
        slashed_ledger: dict[str, Decimal] = {}
        paid_ledger: dict[int, Decimal] = {}
        for line in lines:
            ref = line["reference"]
            if ref.startswith("slash:") and line["account"] == "bonded":
                slashed_ledger[ref[len("slash:"):]] = slashed_ledger.get(ref[len("slash:"):], Decimal(0)) - Decimal(line["amount"])
            m = re.fullmatch(r"(slot|bonus):([0-9a-f-]+)/(\d+)", ref)
            if m and m.group(2) == cid and line["account"] == "available" and Decimal(line["amount"]) > 0:
                n = int(m.group(3))
                paid_ledger[n] = paid_ledger.get(n, Decimal(0)) + Decimal(line["amount"])
        mine = [e for e in events.values() if e.endpoint == name]
        slashed_events = {e.data.get("job_id"): Decimal(e.data.get("amount")) for e in mine if e.type == "stake.slashed"}
        paid_events = {e.slot: Decimal(e.data.get("amount")) for e in mine if e.type == "payment.received"}
        if slashed_events != slashed_ledger:
            problems.append(f"{name}: stake.slashed {slashed_events} vs ledger slashes {slashed_ledger}")
        if paid_events != paid_ledger:
            problems.append(f"{name}: payment.received {paid_events} vs ledger payments {paid_ledger}")
        figures.append(f"{name}: {len(slashed_events)} stake.slashed = {len(slashed_ledger)} slash lines "
                       f"({sum(slashed_events.values(), Decimal(0))} in all), {len(paid_events)} payment.received = "
                       f"{len(paid_ledger)} slots paid ({', '.join(f'slot {n}: {a}' for n, a in sorted(paid_events.items()))})")
    report("amounts vs ledgers", not problems, f"{'; '.join(figures)}; problems: {problems[:6] or 'none'}")


RANK = {"job.expired": 0, "stake.slashed": 1, "slot.failed_over": 0, "job.offered": 2, "payment.received": 1,
        "slot.delivered": 1, "slot.missed": 1, "slot.unused": 1, "contract.completed": 3}


def check_order(events: dict, reqs: list[Request], cid: str) -> None:
    """Per endpoint and subject: arrival order is the order of the transitions, and no event is sent
    before the earlier ones of its subject were accepted."""
    problems = []
    by_subject: dict[tuple, list[Received]] = {}
    for e in events.values():
        subject = ("slot", e.slot) if e.slot is not None else ("contract", cid)
        by_subject.setdefault((e.endpoint, subject), []).append(e)
    first_request: dict[tuple[str, str], float] = {}
    for r in reqs:
        first_request.setdefault((r.endpoint, r.msg_id), r.at)
    checked = 0
    for (endpoint, subject), evs in by_subject.items():
        arrival = sorted(evs, key=lambda e: e.accepted_at or 1e18)
        causal = sorted(evs, key=lambda e: (e.timestamp, RANK.get(e.type, 9)))
        if [e.msg_id for e in arrival] != [e.msg_id for e in causal]:
            problems.append(f"{endpoint} {subject}: arrived {[e.type for e in arrival]}, happened {[e.type for e in causal]}")
        for a, b in zip(causal, causal[1:]):
            checked += 1
            if a.accepted_at is None or first_request[(endpoint, b.msg_id)] < a.accepted_at:
                problems.append(f"{endpoint} {subject}: {b.type} sent at {stamp(first_request[(endpoint, b.msg_id)])} "
                                f"before {a.type} was accepted ({stamp(a.accepted_at)})")
    # Exactly once: no transition told twice under two ids.
    told: dict[tuple, int] = {}
    for e in events.values():
        k = (e.endpoint, e.type, json.dumps(e.data, sort_keys=True))
        told[k] = told.get(k, 0) + 1
    twice = [k[:2] for k, c in told.items() if c > 1]
    dup = sum(1 for e in events.values() if e.accepted > 1)
    report("order and once", not problems and not twice,
           f"{len(by_subject)} (endpoint, subject) streams, {checked} consecutive pairs: arrival order = transition "
           f"order, and each sent only after the one before was accepted: {'yes' if not problems else 'NO'}; "
           f"events accepted more than once (same webhook-id, at-least-once): {dup}; one transition under two "
           f"webhook-ids: {twice or 'none'}; problems: {problems[:6] or 'none'}")


def check_deliveries(hooks: dict, attempts: dict, events: dict, reqs: list[Request], w: dict) -> None:
    problems = []
    figures = []
    t_down, t_up, t_kill = w["t_down"], w["t_up"], w["t_kill"]
    for name, rows in attempts.items():
        evs = {e.msg_id: e for e in events.values() if e.endpoint == name}
        api: dict[str, list[dict]] = {}
        for a in rows:
            api.setdefault(msg_id(a["event_id"]), []).append(a)
        statuses: dict[str, int] = {}
        for a in rows:
            statuses[str(a["status"])] = statuses.get(str(a["status"]), 0) + 1
            if a["status"] not in (200, 503):
                problems.append(f"{name}: attempt {a['attempt_id']} {a['status']} {a['error']}")
            if a["status"] == 503 and "503" not in (a.get("error") or ""):
                problems.append(f"{name}: a 503 attempt with error {a.get('error')!r}")
            if a["status"] == 200 and a.get("error") is not None:
                problems.append(f"{name}: a success with error {a.get('error')!r}")
        missing = [m for m in evs if m not in api]
        unknown = [m for m in api if m not in evs]
        undelivered = [m for m, rs in api.items() if not any(a["status"] == 200 for a in rs)
                       or any(a["delivery_state"] != "delivered" for a in rs)]
        if missing:
            problems.append(f"{name}: {len(missing)} events the receiver accepted have no attempt on record")
        if unknown:
            problems.append(f"{name}: {len(unknown)} events on record the receiver never verified")
        if undelivered:
            problems.append(f"{name}: {len(undelivered)} events not delivered on record")
        # The outage: every refusal the receiver made is on record as a 503, followed by a success.
        in_outage = [r for r in reqs if r.endpoint == name and r.answered == 503 and t_down <= r.at <= t_up + 0.1]
        api_outage = [a for rs in api.values() for a in rs if a["status"] == 503
                      and t_down - 1 <= parse_time(a["attempted_at"]) <= t_up + 0.5]
        per_req: dict[str, int] = {}
        for r in in_outage:
            per_req[r.msg_id] = per_req.get(r.msg_id, 0) + 1
        per_api: dict[str, int] = {}
        for a in api_outage:
            per_api[msg_id(a["event_id"])] = per_api.get(msg_id(a["event_id"]), 0) + 1
        if per_req != per_api:
            problems.append(f"{name}: the outage's refusals at the receiver {per_req} vs 503s on record {per_api}")
        for m in per_api:
            later = [a for a in api.get(m, []) if a["status"] == 200
                     and parse_time(a["attempted_at"]) >= t_up - 0.5]
            if not later:
                problems.append(f"{name}: {m} refused in the outage, no success after it")
        # Requests vs attempts on record: equal, but for one attempt under way at the kill (its
        # outcome died with the process; it is sent again).
        for m, e in evs.items():
            n_api = len(api.get(m, []))
            under_way = any(r.endpoint == name and r.msg_id == m and t_kill - 11 <= r.at <= t_kill for r in reqs)
            if not (n_api == e.requests or (under_way and n_api == e.requests - 1)):
                problems.append(f"{name}: {e.type} {m}: {e.requests} requests, {n_api} attempts on record")
        lat = [a["latency_ms"] for a in rows]
        unrecorded = sum(max(0, e.requests - len(api.get(m, []))) for m, e in evs.items())
        figures.append(f"{name}: {len(rows)} attempts {statuses} for {len(api)} events, {len(per_api)} events refused "
                       f"{sum(per_api.values())} times in the outage all delivered later, {unrecorded} requests not on "
                       f"record (under way at the kill), attempt latency p50 {percentile(lat, 50):.0f} ms max "
                       f"{max(lat, default=0)} ms")
    report("deliveries on record", not problems, f"{'; '.join(figures)}; problems: {problems[:8] or 'none'}")


def figures(events: dict, attempts: dict, reqs: list[Request], w: dict) -> None:
    t_down, t_up, t_down2, t_kill = w["t_down"], w["t_up"], w["t_down2"], w["t_kill"]
    t_restart, t_healthy, t_lease = w["t_restart"], w["t_healthy"], w["t_lease"] or w["t_healthy"]
    evs = list(events.values())
    clear = [e for e in evs if e.refused == 0 and e.accepted_at is not None
             and not (t_down - 0.5 <= e.timestamp <= t_up) and not (t_down2 - 0.5 <= e.timestamp <= t_lease + 0.5)
             and not (e.timestamp < t_kill < e.accepted_at)]
    lat = [e.accepted_at - e.timestamp for e in clear]
    per_type: dict[str, list[float]] = {}
    for e in clear:
        per_type.setdefault(e.type, []).append(e.accepted_at - e.timestamp)
    negative = [e for e in clear if e.accepted_at < e.timestamp - 0.05]
    report("latency, receiver up", bool(lat) and not negative,
           f"from the event's timestamp to its arrival: {stats(lat)}; per type: "
           + ", ".join(f"{k} p50 {percentile(v, 50):.2f} max {max(v):.2f} s (n={len(v)})" for k, v in sorted(per_type.items()))
           + f" (PCX_WEBHOOK_TICK_MS=200, PCX_SETTLEMENT_TICK_MS=200); arrivals before their timestamp: {len(negative)}")

    refused_in_outage = {(r.endpoint, r.msg_id) for r in reqs if r.answered == 503 and t_down <= r.at <= t_up + 0.1}
    held = [e for e in evs if (e.endpoint, e.msg_id) in refused_in_outage or t_down <= e.timestamp <= t_up]
    after = [e.accepted_at - t_up for e in held if e.accepted_at is not None]
    lost = [e for e in held if e.accepted_at is None]
    refusals = sum(e.refused for e in held)
    report("receiver outage", bool(held) and not lost,
           f"503 for {t_up - t_down:.1f} s: {len(held)} events held ({sum(1 for e in held if e.refused)} refused "
           f"{refusals} times, the rest not yet due), every one arrived after the receiver came back: "
           f"{'yes' if not lost else f'NO, {len(lost)} never'}; seconds after it came back: {stats(after)} "
           f"(retries 5 s doubling, with jitter: the next attempt of each)")

    pending = [e for e in evs if e.timestamp < t_kill and (e.accepted_at is None or e.accepted_at > t_kill)]
    after_restart = [e.accepted_at - t_restart for e in pending if e.accepted_at is not None]
    after_lease = [e.accepted_at - t_lease for e in pending if e.accepted_at is not None]
    lost = [e for e in pending if e.accepted_at is None]
    refused = sum(1 for e in pending if e.msg_id in w["held_at_kill"])
    report("kill -9", bool(pending) and not lost,
           f"kill at +{t_kill - w['S']:.1f} s of the contract, pcx serve started again {t_restart - t_kill:.1f} s later, "
           f"/health 200 after {t_healthy - t_restart:.1f} s, worker lease (delivery loop, scheduler) after "
           f"{t_lease - t_restart:.1f} s (the dead process's lease running out: PCX_WORKER_LEASE_SECS=15); "
           f"{len(pending)} events pending at the kill ({refused} refused just before it), all arrived: "
           f"{'yes' if not lost else f'NO, {len(lost)} never'}; seconds after the restart: {stats(after_restart)}; "
           f"after /health first said it holds the lease (polled every 100 ms): {stats(after_lease)}")

    dist: dict[int, int] = {}
    for e in evs:
        dist[e.requests] = dist.get(e.requests, 0) + 1
    api_dist: dict[int, int] = {}
    for rows in attempts.values():
        per: dict[str, int] = {}
        for a in rows:
            per[a["event_id"]] = per.get(a["event_id"], 0) + 1
        for c in per.values():
            api_dist[c] = api_dist.get(c, 0) + 1
    report("attempts per event", True,
           f"{len(evs)} events: requests at the receiver per event {dict(sorted(dist.items()))}; attempts on record per "
           f"event {dict(sorted(api_dist.items()))}; mean {sum(k * v for k, v in dist.items()) / max(1, len(evs)):.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pcx", type=Path, default=ROOT / "target" / "release" / "pcx")
    parser.add_argument("--keep-logs", action="store_true", help="keep the exchange's and agents' logs")
    args = parser.parse_args()
    if not os.access(args.pcx, os.X_OK):
        raise SystemExit(f"no pcx binary at {args.pcx}")

    def terminate(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    started = time.time()
    try:
        run(args.pcx.resolve(), args.keep_logs)
    except SystemExit as err:
        if err.code not in (None, 0):
            report("run", False, str(err.code))
    print(f"\nsummary ({time.time() - started:.0f} s):")
    for check, held, figures_ in RESULTS:
        print(f"  {'held  ' if held else 'BROKEN'} {check}: {figures_}")
    return 0 if RESULTS and all(held for _, held, _ in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())

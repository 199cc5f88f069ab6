#!/usr/bin/env python3
"""Attacks on a running `pcx serve`, as an outsider would make them, with the figures they produce.

Each attack starts its own server (`harness.Server`: a fresh database, the settings it names)
and talks to it over TCP/HTTP only:

  slowloris      1000 connections sending their headers a byte every 2 s, and one dribbling a body:
                 how long the server keeps them, and /health latency for everyone else meanwhile
  floods         sign-ups and token requests from one address as fast as it can: how many pass
                 the default limits, and that each refusal is a 429 with Retry-After
  sse            1000 subscribers to the oracle stream and one more: all get rounds, the extra
                 one a 503 too_many_subscribers with Retry-After; server memory
  quote          a quote against 10,000 tiny offers of 50 provers: its latency under the caps
  extremes       every number and date a client sends at its extremes: each a 4xx with a code
  starvation     64 clients holding the HTTP database pool busy while a 10 s-cadence contract
                 settles with a real prover agent: are its slots delivered and paid on time?
  secrets        the generated secrets and every API key, searched for in the log and in a dump
                 of every table a database reader can select

Usage (from the repository root, after `cargo build --release`):

    target/fuzz-venv/bin/python exchange/outsider/attacks.py [--pcx target/release/pcx] [--only slowloris,sse]

Prints a figure per attack and exits non-zero if any attack got through (a 5xx, a panic, a
secret found, a slot not settled on time, a limit not holding).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

from harness import (ADMIN_KEY, HASH_CHAIN_10, NO_RATE_LIMITS, ROOT, Server, account, buy, call, market, offer,
                     percentile, psql, report, RESULTS, rfc3339, token)

def latencies_ms(base: str, path: str, stop: threading.Event, every: float = 0.1) -> tuple[list[float], list[str]]:
    """Times GET `path` until `stop` is set; returns latencies and failures."""
    times, failures = [], []
    session = requests.Session()
    while not stop.is_set():
        started = time.perf_counter()
        try:
            response = session.get(base + path, timeout=15)
            if response.status_code >= 500:
                failures.append(str(response.status_code))
        except requests.RequestException as err:
            failures.append(type(err).__name__)
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(every)
    return times, failures


def in_background(fn, *args):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    return pool.submit(fn, *args)


# --- slowloris -------------------------------------------------------------------------------

async def slow_headers(port: int, hold_for: float) -> float:
    """Sends a request's headers a byte every 2 s; returns seconds until the server hung up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    payload = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    try:
        writer.write(payload[:20])
        await writer.drain()
        for byte in payload[20:]:
            if time.monotonic() - started > hold_for:
                break
            try:
                data = await asyncio.wait_for(reader.read(1024), timeout=2)
                if data == b"" or data:
                    # The server answered (an error status) or closed the connection.
                    return time.monotonic() - started
            except asyncio.TimeoutError:
                pass
            writer.write(bytes([byte]))
            await writer.drain()
    except (ConnectionError, OSError):
        return time.monotonic() - started
    finally:
        writer.close()
    return float("inf")


async def slow_body(port: int, hold_for: float) -> tuple[float, str]:
    """Sends complete headers and then a JSON body a byte every second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n{")
    await writer.drain()
    try:
        while time.monotonic() - started < hold_for:
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout=1)
                status = data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed"
                return time.monotonic() - started, status
            except asyncio.TimeoutError:
                writer.write(b" ")
                await writer.drain()
    except (ConnectionError, OSError):
        return time.monotonic() - started, "reset"
    finally:
        writer.close()
    return float("inf"), "still open"


async def silent(port: int, hold_for: float) -> float:
    """Connects and sends nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        await asyncio.wait_for(reader.read(1), timeout=hold_for)
        return time.monotonic() - started
    except asyncio.TimeoutError:
        return float("inf")
    except (ConnectionError, OSError):
        return time.monotonic() - started
    finally:
        writer.close()


def attack_slowloris(pcx: Path) -> None:
    server = Server(pcx, {}, "slowloris")
    try:
        stop = threading.Event()
        probe = in_background(latencies_ms, server.base, "/health", stop)

        async def attack():
            heads = [slow_headers(server.port, 60) for _ in range(800)]
            quiet = [silent(server.port, 60) for _ in range(200)]
            body = [slow_body(server.port, 90)]
            return await asyncio.gather(asyncio.gather(*heads), asyncio.gather(*quiet), asyncio.gather(*body))

        heads, quiet, body = asyncio.run(attack())
        stop.set()
        times, failures = probe.result()
        held_max = max(heads + quiet)
        body_secs, body_status = body[0]
        held = held_max < 20 and body_secs < 45 and not failures and not server.panics()
        report("slowloris", held,
               f"800 slow-header connections closed after {statistics.median(heads):.1f} s median, "
               f"{max(heads):.1f} s max; 200 silent ones after {max(quiet):.1f} s max; a dribbled body "
               f"answered `{body_status}` after {body_secs:.1f} s; /health meanwhile: {len(times)} requests, "
               f"p50 {percentile(times, 50):.1f} ms, p99 {percentile(times, 99):.1f} ms, {len(failures)} failed")
    finally:
        server.stop()


# --- floods ----------------------------------------------------------------------------------

def flood(base: str, path: str, body_of, seconds: float, workers: int = 16) -> dict[int, int]:
    statuses: dict[int, int] = {}
    missing_retry_after = 0
    lock = threading.Lock()
    deadline = time.time() + seconds

    def worker():
        nonlocal missing_retry_after
        session = requests.Session()
        while time.time() < deadline:
            response = session.post(base + path, json=body_of(), timeout=30)
            with lock:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 429 and (
                        "Retry-After" not in response.headers or response.json()["error"]["code"] != "rate_limited"):
                    missing_retry_after += 1

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses[-1] = missing_retry_after
    return statuses


def attack_floods(pcx: Path) -> None:
    server = Server(pcx, {}, "floods")
    try:
        seconds = 30.0
        signups = flood(server.base, "/v1/accounts",
                        lambda: {"name": "flood-" + uuid.uuid4().hex[:12], "role": "buyer"}, seconds)
        made = int(psql(server.database_url, "SELECT count(*) FROM accounts WHERE name LIKE 'flood-%'").strip())
        tokens = flood(server.base, "/v1/auth/token", lambda: {"api_key": "pcx_" + uuid.uuid4().hex}, seconds)
        bad_retry = signups.pop(-1) + tokens.pop(-1)
        total_signups = sum(signups.values())
        # Default: 30 a minute with a burst of 10 per address.
        allowed = 10 + 30 * seconds / 60 + 2
        held = (made <= allowed and not bad_retry and all(s < 500 for s in {**signups, **tokens})
                and not server.panics())
        report("floods", held,
               f"sign-ups for {seconds:.0f} s from one address: {total_signups} requests "
               f"({total_signups / seconds:.0f}/s), statuses {signups}, {made} accounts made (limit "
               f"{allowed:.0f}); token requests: {sum(tokens.values())}, statuses {tokens}; "
               f"429s without Retry-After or the rate_limited code: {bad_retry}")
    finally:
        server.stop()


# --- SSE subscribers -------------------------------------------------------------------------

async def subscriber(port: int, seconds: float) -> tuple[int, int, str]:
    """Reads the stream for `seconds`; returns (status, rounds seen, Retry-After)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/oracle/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    retry_after = ""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"retry-after:"):
            retry_after = line.split(b":", 1)[1].strip().decode()
    rounds = 0
    deadline = time.monotonic() + seconds
    try:
        while status == 200 and time.monotonic() < deadline:
            line = await asyncio.wait_for(reader.readline(), timeout=max(0.1, deadline - time.monotonic()))
            if b"event: round" in line:
                rounds += 1
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
    return status, rounds, retry_after


def attack_sse(pcx: Path) -> None:
    server = Server(pcx, {**NO_RATE_LIMITS, "PCX_ORACLE_HEARTBEAT_SECS": "5"}, "sse")
    try:
        rss_before = server.rss_mib()

        async def attack():
            first = [asyncio.create_task(subscriber(server.port, 25)) for _ in range(1000)]
            await asyncio.sleep(8)
            extra = await subscriber(server.port, 1)
            rss_during = server.rss_mib()
            return await asyncio.gather(*first), extra, rss_during

        subscribers, extra, rss_during = asyncio.run(attack())
        accepted = sum(1 for s in subscribers if s[0] == 200)
        with_rounds = sum(1 for s in subscribers if s[1] > 0)
        held = (accepted == 1000 and with_rounds == 1000 and extra[0] == 503 and extra[2] != ""
                and not server.panics())
        time.sleep(1)
        report("sse", held,
               f"1000 subscribers: {accepted} accepted, {with_rounds} received rounds (median "
               f"{statistics.median(s[1] for s in subscribers):.0f} in 25 s); the 1001st: {extra[0]} with "
               f"Retry-After {extra[2]!r}; server RSS {rss_before:.0f} MiB before, {rss_during:.0f} MiB with "
               f"1000 subscribers")
    finally:
        server.stop()


# --- a quote against 10,000 tiny offers --------------------------------------------------------

def attack_quote(pcx: Path) -> None:
    server = Server(pcx, {**NO_RATE_LIMITS, "PCX_OFFER_CAPACITY_CHECK": "off"}, "quote")
    try:
        admin = token(server.base, ADMIN_KEY)
        provers = [account(server.base, admin, f"tiny-{i}", "prover", "1000000") for i in range(50)]
        for prover in provers:
            call(server.base, "POST", "/v1/provers/stake", prover["token"], {"amount": "900000"})
        started = time.time()
        jobs = [(p["token"], f"1.{(i * 7919 + j * 104729) % 1000:03d}") for i, p in enumerate(provers) for j in range(200)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda job: offer(server.base, job[0], 1, job[1]), jobs))
        post_secs = time.time() - started
        count = int(psql(server.database_url, "SELECT count(*) FROM offers").strip())
        buyer = account(server.base, admin, "quoter", "buyer", "10000000")
        start = datetime.now(timezone.utc) + timedelta(hours=1)
        # Each tiny offer can serve an hourly cadence, so every one is a candidate (the cheapest
        # PCX_MAX_QUOTE_CANDIDATES of them are allocated); redundancy 1 makes it look for backups too.
        shapes = {"a week hourly with a backup": (7, 1), "29 days hourly with a backup": (29, 1)}
        stop = threading.Event()
        probe = in_background(latencies_ms, server.base, "/v1/oracle/feeds", stop)
        figures = []
        all_outcomes: set[str] = set()
        for label, (days, redundancy) in shapes.items():
            body = {"proof_class": HASH_CHAIN_10, "redundancy": redundancy,
                    "schedule": {"start": rfc3339(start), "end": rfc3339(start + timedelta(days=days)),
                                 "every_secs": 3600}}
            times, outcomes = [], {}
            for _ in range(5):
                t0 = time.perf_counter()
                response = requests.post(server.base + "/v1/quotes", json=body,
                                         headers={"Authorization": f"Bearer {buyer['token']}"}, timeout=60)
                times.append((time.perf_counter() - t0) * 1000)
                answer = response.json()
                key = f"{response.status_code} " + (answer["error"]["code"] if "error" in answer
                                                    else f"{len(answer['allocation'])} blocks")
                outcomes[key] = outcomes.get(key, 0) + 1
            all_outcomes |= set(outcomes)
            figures.append(f"{label}: {outcomes}, median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")
        stop.set()
        others, failures = probe.result()
        held = all(not k.startswith("5") for k in all_outcomes) and not failures and not server.panics()
        report("quote", held,
               f"{count} offers of 1 proof/hour from 50 provers (posted in {post_secs:.0f} s); "
               + "; ".join(figures)
               + f"; other requests meanwhile p99 {percentile(others, 99):.0f} ms, {len(failures)} failed")
    finally:
        server.stop()


# --- every parameter at its extremes ---------------------------------------------------------

def attack_extremes(pcx: Path) -> None:
    server = Server(pcx, {**NO_RATE_LIMITS, "PCX_OFFER_CAPACITY_CHECK": "off"}, "extremes")
    try:
        base = server.base
        accounts = market(base, "x")
        admin, buyer, prover = accounts["admin"]["token"], accounts["buyer"], accounts["prover"]
        start = datetime.now(timezone.utc) + timedelta(hours=2)
        contract = buy(base, buyer["token"], start, timedelta(hours=5), 3600)
        cid = contract["contract_id"]
        big = 9223372036854775808
        klass = lambda **kw: {**HASH_CHAIN_10, **kw}  # noqa: E731
        schedule = lambda **kw: {"start": rfc3339(start), "end": rfc3339(start + timedelta(days=1)),  # noqa: E731
                                 "every_secs": 3600, **kw}
        cases = [
            # Paging past the last slot is an empty page, as for any list.
            ("GET", f"/v1/contracts/{cid}/slots?from={big}", None, buyer, {200}),
            ("GET", f"/v1/contracts/{cid}/slots?from=-1", None, buyer),
            ("GET", f"/v1/contracts/{cid}/slots?limit=0", None, buyer),
            ("GET", f"/v1/contracts/{cid}/slots?limit={big}", None, buyer),
            ("GET", f"/v1/contracts/{cid}/slots/{big}/proof", None, buyer),
            ("PUT", f"/v1/contracts/{cid}/slots/{big}/input", {"public_input": "1"}, buyer),
            ("PUT", f"/v1/contracts/{cid}/slots/0/input", {"public_input": "9" * 200}, buyer),
            ("GET", "/v1/oracle/history?feed=x&to=-262143-01-01T00:00:00Z", None, None),
            ("GET", "/v1/oracle/history?feed=x&from=+262142-12-31T23:59:59Z", None, None),
            ("GET", "/v1/oracle/history?feed=x&at=0001-01-01T00:00:00Z", None, None),
            ("GET", "/v1/oracle/history?feed=x&limit=100000000", None, None),
            ("GET", "/v1/accounts/me/ledger?limit=4294967296", None, buyer),
            ("GET", f"/v1/accounts/me/ledger?before={big}", None, buyer),
            ("GET", "/v1/contracts?limit=-5", None, buyer),
            ("GET", "/v1/offers?size_log2=300", None, None),
            ("GET", "/v1/offers?deadline_secs=4294967296", None, None),
            ("GET", "/v1/offers?limit=1000000", None, None),
            ("POST", "/v1/admin/deposits", {"account_id": buyer["account_id"], "amount": "99999999999999.999999"}, "admin"),
            ("POST", "/v1/admin/deposits", {"account_id": buyer["account_id"], "amount": "1e30"}, "admin"),
            ("POST", "/v1/admin/deposits", {"account_id": buyer["account_id"], "amount": "0.0000001"}, "admin"),
            ("POST", "/v1/admin/deposits", {"account_id": buyer["account_id"], "amount": "-1"}, "admin"),
            ("POST", "/v1/withdrawals", {"amount": "79228162514264337593543950335"}, buyer),
            ("POST", "/v1/provers/stake", {"amount": "1" + "0" * 40}, prover),
            ("POST", "/v1/quotes", {"proof_class": klass(deadline_secs=4294967295), "schedule": schedule()}, buyer),
            ("POST", "/v1/quotes", {"proof_class": klass(deadline_secs=4294967296), "schedule": schedule()}, buyer),
            ("POST", "/v1/quotes", {"proof_class": klass(deadline_secs=0), "schedule": schedule()}, buyer),
            ("POST", "/v1/quotes", {"proof_class": klass(size_log2=255), "schedule": schedule()}, buyer),
            ("POST", "/v1/quotes", {"proof_class": HASH_CHAIN_10,
                                    "schedule": schedule(end="+262142-12-31T23:59:59Z")}, buyer),
            ("POST", "/v1/quotes", {"proof_class": HASH_CHAIN_10,
                                    "schedule": schedule(start="+262142-12-30T23:59:59Z", end="+262142-12-31T23:59:59Z")}, buyer),
            ("POST", "/v1/quotes", {"proof_class": HASH_CHAIN_10, "schedule": schedule(every_secs=0)}, buyer),
            ("POST", "/v1/quotes", {"proof_class": HASH_CHAIN_10, "schedule": schedule(every_secs=4294967295)}, buyer),
            ("POST", "/v1/quotes", {"proof_class": HASH_CHAIN_10, "schedule": schedule(), "proofs_per_slot": 4294967295}, buyer),
            ("POST", "/v1/quotes", {"proof_class": HASH_CHAIN_10, "schedule": schedule(), "redundancy": 255}, buyer),
            ("POST", "/v1/quotes", {"proof_class": HASH_CHAIN_10, "schedule": schedule(),
                                    "max_price_per_proof": "99999999999999999999999"}, buyer),
            ("POST", "/v1/quotes", {"proof_class": HASH_CHAIN_10, "schedule": schedule(), "min_reputation": "NaN"}, buyer),
            ("POST", "/v1/offers", {"proof_class": HASH_CHAIN_10, "window_start": rfc3339(start),
                                    "window_end": "+262142-12-31T23:59:59Z", "proofs_per_hour": 1,
                                    "price_per_proof": "1"}, prover),
            ("POST", "/v1/offers", {"proof_class": HASH_CHAIN_10, "window_start": rfc3339(start),
                                    "window_end": rfc3339(start + timedelta(days=1)), "proofs_per_hour": 4294967295,
                                    "price_per_proof": "1"}, prover),
            ("POST", "/v1/offers", {"proof_class": HASH_CHAIN_10, "window_start": rfc3339(start),
                                    "window_end": rfc3339(start + timedelta(days=1)), "proofs_per_hour": 1,
                                    "price_per_proof": "1", "tiers": [{"from_proofs": 18446744073709551615,
                                                                       "price_per_proof": "0.5"}]}, prover,
             # A tier no contract reaches is harmless: it never applies.
             {201}),
            ("POST", "/v1/offers", {"proof_class": HASH_CHAIN_10, "window_start": rfc3339(start),
                                    "window_end": rfc3339(start + timedelta(days=1)), "proofs_per_hour": 1,
                                    "price_per_proof": "1", "tiers": [{"from_proofs": 1, "price_per_proof": "0.5"}] * 10000}, prover),
            ("DELETE", f"/v1/offers/{big}", None, prover),
            ("DELETE", "/v1/offers/-9223372036854775808", None, prover),
            ("POST", "/v1/agent/jobs/claim", {"agent_id": str(uuid.uuid4()), "sizes": list(range(256)), "wait_secs": 4294967295}, prover),
            ("POST", "/v1/agent/heartbeat", {"agent_id": str(uuid.uuid4()), "workers": 4294967295, "backend": "cpu",
                                             "capabilities": []}, prover),
            ("GET", "/v1/auth/nonce?address=0x" + "f" * 10000, None, None),
            ("POST", "/v1/accounts", {"name": "n" * 100000, "role": "buyer"}, None),
            ("POST", "/v1/contracts", {"quote_id": "0" * 5000}, buyer),
        ]
        outcomes, broken = {}, []
        for method, path, body, who, *expected in cases:
            bearer = admin if who == "admin" else (who["token"] if who else None)
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            headers["Idempotency-Key"] = uuid.uuid4().hex
            response = requests.request(method, base + path, json=body, headers=headers, timeout=60)
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = None
            outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
            if expected:
                if response.status_code not in expected[0]:
                    broken.append(f"{method} {path[:80]} -> {response.status_code} {response.text[:120]}")
            elif not 400 <= response.status_code < 500 or code is None:
                broken.append(f"{method} {path[:80]} -> {response.status_code} {response.text[:120]}")
        held = not broken and not server.panics()
        report("extremes", held, f"{len(cases)} requests at the extremes: statuses {outcomes}; "
                                 f"not a 4xx with a code: {broken or 'none'}")
    finally:
        server.stop()


# --- the database pool starved while a contract settles ----------------------------------------

def attack_starvation(pcx: Path) -> None:
    server = Server(pcx, {**NO_RATE_LIMITS, "PCX_OFFER_CAPACITY_CHECK": "off", "PCX_MIN_CADENCE_SECS": "10",
                          "PCX_SETTLEMENT_TICK_MS": "500"}, "starvation")
    agent = None
    try:
        base = server.base
        accounts = market(base, "s", proofs_per_hour=600)
        buyer, prover = accounts["buyer"], accounts["prover"]
        agent_log = open(server.data_dir / "agent.log", "w")
        agent = subprocess.Popen([str(pcx), "prover", "--exchange", base, "--api-key", prover["api_key"],
                                  "--workers", "1", "--sizes", "10"], stdout=agent_log, stderr=subprocess.STDOUT)
        start = datetime.now(timezone.utc) + timedelta(seconds=40)
        slots = 18
        contract = buy(base, buyer["token"], start, timedelta(seconds=10 * slots), 10)
        cid = contract["contract_id"]
        for n in range(slots):
            call(base, "PUT", f"/v1/contracts/{cid}/slots/{n}/input", buyer["token"], {"public_input": str(1000 + n)})

        # The attackers: each holds a request that needs the database, over and over (the book,
        # the ledger, the history; long-poll claims of an agent id nobody runs).
        stop = threading.Event()
        counts = {"requests": 0, "5xx": 0, "errors": 0}
        lock = threading.Lock()
        attacker_paths = ["/v1/offers?limit=1000", "/v1/oracle/history?feed=groth16-bn254/hash-chain/10/600&limit=1000",
                          "/v1/accounts/me/ledger?limit=500", "/v1/contracts?limit=200"]

        def attacker(i: int):
            session = requests.Session()
            headers = {"Authorization": f"Bearer {buyer['token']}"}
            while not stop.is_set():
                try:
                    response = session.get(base + attacker_paths[i % len(attacker_paths)], headers=headers, timeout=40)
                    with lock:
                        counts["requests"] += 1
                        counts["5xx"] += response.status_code >= 500
                except requests.RequestException:
                    with lock:
                        counts["errors"] += 1

        threads = [threading.Thread(target=attacker, args=(i,)) for i in range(64)]
        for t in threads:
            t.start()
        attack_started = time.time()
        end = start + timedelta(seconds=10 * slots + 90)
        while datetime.now(timezone.utc) < end:
            time.sleep(2)
        stop.set()
        for t in threads:
            t.join()
        attack_secs = time.time() - attack_started
        states = requests.get(f"{base}/v1/contracts/{cid}/slots?limit=100",
                              headers={"Authorization": f"Bearer {buyer['token']}"}, timeout=30).json()["slots"]
        by_state: dict[str, int] = {}
        for slot in states:
            by_state[slot["state"]] = by_state.get(slot["state"], 0) + 1
        lateness = psql(server.database_url,
                        "SELECT coalesce(max(extract(epoch FROM delivered_at - opens_at)), -1) FROM slots "
                        f"WHERE contract_id = '{cid}'").strip()
        slashes = int(psql(server.database_url, "SELECT count(*) FROM journal_entries WHERE kind = 'slash'").strip() or 0)
        delivered = by_state.get("delivered", 0) + by_state.get("paid", 0)
        held = delivered == slots and slashes == 0 and not server.panics()
        report("starvation", held,
               f"64 clients on DB-heavy routes for {attack_secs:.0f} s ({counts['requests']} requests, "
               f"{counts['requests'] / attack_secs:.0f}/s, {counts['5xx']} 5xx, {counts['errors']} transport errors); "
               f"the 10 s-cadence contract's {slots} slots: {by_state}, latest delivery {float(lateness):.1f} s "
               f"after its slot opened (deadline 600 s), slashes {slashes}")
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=30)
        server.stop()


# --- secrets ---------------------------------------------------------------------------------

def attack_secrets(pcx: Path) -> None:
    # No secret from the environment: every one is generated, as on a fresh install.
    server = Server(pcx, {**NO_RATE_LIMITS, "PCX_ADMIN_API_KEY": None, "PCX_OFFER_CAPACITY_CHECK": "off",
                          "PCX_LOG": "debug"}, "secrets")
    try:
        secrets_dir = server.data_dir / "secrets"
        secrets = {p.name: p.read_text().strip() for p in secrets_dir.iterdir() if p.is_file()}
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in secrets_dir.iterdir()}
        admin = token(server.base, secrets["admin_api_key"])
        for i in range(3):
            created = account(server.base, admin, f"secret-{i}", "buyer" if i else "prover")
            secrets[f"api key of {created['name']}"] = created["api_key"]
            secrets[f"token of {created['name']}"] = created["token"]
        dump = subprocess.run(["pg_dump", "--data-only", server.database_url], capture_output=True, text=True,
                              check=True).stdout
        log = server.log_text()
        found = [f"{name} in {where}" for name, value in secrets.items() if len(value) >= 16
                 for where, text in (("the log", log), ("the database dump", dump)) if value in text]
        held = not found and all(m == "0o600" for m in modes.values())
        report("secrets", held,
               f"searched {len(secrets)} secrets ({', '.join(sorted(n for n in secrets if 'of' not in n))}, "
               f"3 API keys and their tokens) in {len(log) // 1024} KiB of log and a {len(dump) // 1024} KiB dump "
               f"of every table: found {found or 'none'}; secret files' modes {sorted(set(modes.values()))}")
    finally:
        server.stop()


ATTACKS = {
    "slowloris": attack_slowloris,
    "floods": attack_floods,
    "sse": attack_sse,
    "quote": attack_quote,
    "extremes": attack_extremes,
    "starvation": attack_starvation,
    "secrets": attack_secrets,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pcx", type=Path, default=ROOT / "target" / "release" / "pcx")
    parser.add_argument("--only", default=",".join(ATTACKS), help="comma-separated: " + ", ".join(ATTACKS))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for name in args.only.split(","):
        started = time.time()
        ATTACKS[name](args.pcx)
        print(f"    ({name} took {time.time() - started:.0f} s)", flush=True)
    print("\nsummary:")
    for attack, held, figures in RESULTS:
        print(f"  {'held  ' if held else 'BROKEN'} {attack}: {figures}")
    return 0 if all(held for _, held, _ in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Three `pcx serve` replicas on one PostgreSQL cluster, as an outsider sees them: HTTP and processes only.

The tool starts a private PostgreSQL cluster of its own (initdb + pg_ctl in a temporary directory, run
as the `postgres` user when we are root, trust authentication on 127.0.0.1 and a free port), so it can
stop and start the database without touching the machine's shared server. On it, three `pcx serve`
replicas sharing one data directory (so one generated JWT secret and oracle key), and a round-robin
TCP proxy in front of them (each new connection to the next replica that accepts). Through the proxy:
two provers with stake and offers, two real `pcx prover` agents, and a buyer's contract of 12 slots
every 10 s with one backup. While it settles:

  kills          a replica is killed with SIGKILL every 8-10 s (every other time the one whose /health
                 says `holds_worker_lease: true`) and restarted 1-3 s later: seconds from each kill of
                 the holder until a replica's /health says it holds the lease (polled every 100 ms)
  outage         once, the database is stopped (`pg_ctl stop -m fast`) for 8 s and started again: a
                 database route polled on every replica every 50 ms answers 503 `unavailable` with
                 Retry-After at once (how fast), the latest price and the feeds stay 200 (memory),
                 and how long after the restart each replica answers 200 again
  outage edge    the requests under way when the database went, or sent before a replica's probe
                 (every 500 ms) noticed: each answered 200 or 503 (never a 500), none held 5 s or more

After the contract: every slot final (delivered, or missed for exchange_late / exchange_down), nobody
slashed (provers' stake, ledgers and reputations), the buyer charged for delivered slots only and
exactly once each, the admin ledger summary balanced with no escrow left, the oracle's round ids per
feed 1, 2, 3, ... without gaps (GET /v1/oracle/history, paged), and one SSE subscriber per replica
(reconnecting after kills) that heard every round published while it listened. Then (unless
--skip-throughput) a fixed read mix from 16 client threads for 20 s, through one replica directly and
through the proxy over the three.

Settings that differ from pcx's defaults, as exchange/tests/replicas.rs sets them:
PCX_WORKER_LEASE_SECS=3 (default 15), PCX_OUTAGE_AFTER_SECS=3 (default 10), PCX_ORACLE_HEARTBEAT_SECS=2
(default 60), PCX_SETTLEMENT_TICK_MS=200, PCX_ORACLE_TICK_MS=250, PCX_MIN_CADENCE_SECS=10,
PCX_DEV_KEYS=true, PCX_OFFER_CAPACITY_CHECK=off, rate limits out of the way.

Usage (from the repository root):

    python3 exchange/outsider/replicas.py --pcx target/release/pcx [--skip-throughput] [--keep-logs]

Prints a report line per check and exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import requests

from harness import (ADMIN_KEY, NO_RATE_LIMITS, RESULTS, ROOT, account, call, free_port, note, offer, parse_time, percentile,
                     psql, report, rfc3339, stamp, token)

REPLICAS = 3
EVERY = 10
SLOTS = 12
DEADLINE = 20
CLASS = {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 10, "deadline_secs": DEADLINE}
LEASE_SECS = 3
OUTAGE_SECS = 8.0
STAKE = "1000"
BUYER_DEPOSIT = "10"

def postgres_bin_dir() -> Path:
    candidates: list[Path] = []
    try:
        done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidates.append(Path(done.stdout.strip()))
    except (OSError, subprocess.CalledProcessError):
        pass

    def version(p: Path) -> float:
        try:
            return float(p.parent.name)
        except ValueError:
            return 0.0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise SystemExit("no PostgreSQL binaries (initdb, pg_ctl): not under `pg_config --bindir` nor /usr/lib/postgresql/*/bin")


class PgCluster:
    """A PostgreSQL cluster of our own in a temporary directory (as `postgres` when we are root)."""

    def __init__(self) -> None:
        self.bin = postgres_bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="pcx-replicas-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self.dir.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/pcx"
        self.admin_url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.start()
        psql(self.admin_url, "CREATE DATABASE pcx")

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise SystemExit(f"{tool} {' '.join(args)} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done

    def start(self) -> None:
        # fsync off: a throwaway cluster on a disk shared with other work; a fast stop checkpoints anyway.
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200 "
                   "-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def destroy(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- replicas and the proxy -------------------------------------------------------------------

class Replica:
    def __init__(self, index: int, pcx: Path, env: dict[str, str], logs: Path):
        self.index = index
        self.pcx = pcx
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "PCX_LISTEN": f"127.0.0.1:{self.port}"}
        self.log_path = logs / f"replica-{index}.log"
        self.process: subprocess.Popen | None = None
        self.log = None
        self.starts = 0
        self.unexpected_exits: list[str] = []

    def start(self) -> None:
        self.check_alive()
        self.log = open(self.log_path, "a")
        self.starts += 1
        self.log.write(f"===== replicas.py: start {self.starts} at {stamp(time.time())} =====\n")
        self.log.flush()
        self.process = subprocess.Popen([str(self.pcx), "serve"], env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        """Records an exit we did not cause."""
        if self.process is not None and self.process.poll() is not None:
            self.unexpected_exits.append(f"replica {self.index} exited by itself with {self.process.returncode} "
                                         f"(start {self.starts})")
            self.process = None

    def kill9(self) -> None:
        self.check_alive()
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None
        if self.log:
            self.log.write(f"===== replicas.py: SIGKILL at {stamp(time.time())} =====\n")
            self.log.close()
            self.log = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.log:
            self.log.close()
            self.log = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass


def _proxy_connection(inbound: socket.socket, ports: list[int], first: int) -> None:
    outbound = None
    for i in range(len(ports)):
        try:
            outbound = socket.create_connection(("127.0.0.1", ports[(first + i) % len(ports)]), timeout=1)
            outbound.settimeout(None)
            break
        except OSError:
            continue
    if outbound is None:
        inbound.close()
        return
    for s in (inbound, outbound):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def upstream():
        _pump(inbound, outbound)
        try:
            outbound.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    t = threading.Thread(target=upstream, daemon=True)
    t.start()
    _pump(outbound, inbound)
    # The replica closed (or died): the client's connection ends with it.
    for s in (inbound, outbound):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    t.join(timeout=5)
    inbound.close()
    outbound.close()


def proxy_main(ports: list[int], ready) -> None:
    """The load balancer (run in a process of its own): each connection to the next replica that accepts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    ready.send(listener.getsockname()[1])
    ready.close()
    n = 0
    while True:
        inbound, _ = listener.accept()
        threading.Thread(target=_proxy_connection, args=(inbound, ports, n), daemon=True).start()
        n += 1


# --- watchers ---------------------------------------------------------------------------------

@dataclass
class HealthSample:
    t0: float
    t1: float
    status: int  # 0: no answer
    holds: bool | None
    retry_after: bool


class HealthMonitor:
    """GET /health on one replica every 100 ms."""

    def __init__(self, replica: Replica, stop: threading.Event):
        self.replica = replica
        self.stop = stop
        self.samples: list[HealthSample] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            t0 = time.time()
            status, holds, retry_after = 0, None, False
            try:
                r = session.get(self.replica.base + "/health", timeout=2)
                status = r.status_code
                retry_after = "Retry-After" in r.headers
                if status == 200:
                    holds = r.json().get("holds_worker_lease")
            except (requests.RequestException, ValueError):
                session = requests.Session()
            t1 = time.time()
            with self.lock:
                self.samples.append(HealthSample(t0, t1, status, holds, retry_after))
            time.sleep(max(0.0, 0.1 - (t1 - t0)))

    def latest(self) -> HealthSample | None:
        with self.lock:
            return self.samples[-1] if self.samples else None

    def since(self, t: float) -> list[HealthSample]:
        with self.lock:
            return [s for s in self.samples if s.t0 >= t]


@dataclass
class Probe:
    t0: float
    t1: float
    status: int  # 0: transport error
    retry_after: str | None
    code: str | None
    error: str = ""


class Poller:
    """GET `path` on one replica every `every` seconds, each request on a connection and a thread of its
    own, so that a request that hangs does not hold back the next ones."""

    def __init__(self, replica: Replica, path: str, bearer: str | None, every: float, cap: int = 400):
        self.replica, self.path, self.bearer, self.every, self.cap = replica, path, bearer, every, cap
        self.probes: list[Probe] = []
        self.lock = threading.Lock()
        self.outstanding = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.time()
            with self.lock:
                room = self.outstanding < self.cap
                if room:
                    self.outstanding += 1
            if room:
                threading.Thread(target=self.one, daemon=True).start()
            time.sleep(max(0.0, self.every - (time.time() - t0)))

    def one(self) -> None:
        headers = {"Authorization": f"Bearer {self.bearer}"} if self.bearer else {}
        headers["Connection"] = "close"
        t0 = time.time()
        try:
            r = requests.get(self.replica.base + self.path, headers=headers, timeout=30)
            try:
                code = r.json().get("error", {}).get("code")
            except (ValueError, AttributeError):
                code = None
            probe = Probe(t0, time.time(), r.status_code, r.headers.get("Retry-After"), code)
        except requests.RequestException as err:
            probe = Probe(t0, time.time(), 0, None, None, type(err).__name__)
        with self.lock:
            self.probes.append(probe)
            self.outstanding -= 1

    def snapshot(self) -> list[Probe]:
        with self.lock:
            return list(self.probes)

    def finish(self) -> list[Probe]:
        self.stop.set()
        self.thread.join(timeout=5)
        give_up = time.time() + 35
        while time.time() < give_up:
            with self.lock:
                if self.outstanding == 0:
                    break
            time.sleep(0.1)
        return sorted(self.snapshot(), key=lambda p: p.t0)


@dataclass
class Subscription:
    replica: int
    connected: float
    status: int
    ended: float | None = None
    end_reason: str = ""
    rounds: list[tuple[str, int, float]] = field(default_factory=list)


class SseWatcher:
    """One subscriber of GET /v1/oracle/stream on one replica, connecting again whenever it is cut off."""

    def __init__(self, replica: Replica, stop: threading.Event):
        self.replica = replica
        self.stop = stop
        self.subscriptions: list[Subscription] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                sock = socket.create_connection(("127.0.0.1", self.replica.port), timeout=2)
            except OSError:
                time.sleep(0.1)
                continue
            sub = None
            try:
                sock.settimeout(5)  # rounds come every 2 s per feed; 5 s of silence: reconnect
                sock.sendall(f"GET /v1/oracle/stream HTTP/1.1\r\nHost: 127.0.0.1:{self.replica.port}\r\n"
                             "Accept: text/event-stream\r\n\r\n".encode())
                reader = sock.makefile("rb")
                status_line = reader.readline()
                if not status_line:
                    raise ConnectionError("closed before the status line")
                status = int(status_line.split(b" ", 2)[1])
                chunked = False
                while True:
                    line = reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                        chunked = True
                sub = Subscription(self.replica.index, time.time(), status)
                with self.lock:
                    self.subscriptions.append(sub)
                if status != 200:
                    sub.end_reason = f"status {status}"
                else:
                    self.read_events(reader, chunked, sub)
            except (OSError, ValueError, IndexError, ConnectionError) as err:
                if sub is not None and not sub.end_reason:
                    sub.end_reason = type(err).__name__
            finally:
                if sub is not None:
                    sub.ended = time.time()
                sock.close()
            time.sleep(0.1)

    def read_events(self, reader, chunked: bool, sub: Subscription) -> None:
        def body_lines():
            buffer = b""
            while not self.stop.is_set():
                if chunked:
                    size_line = reader.readline()
                    if not size_line:
                        return
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        return
                    data = reader.read(size)
                    reader.readline()
                else:
                    data = reader.readline()
                if not data:
                    return
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    yield line.rstrip(b"\r").decode(errors="replace")

        event = ""
        for line in body_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "round":
                round_ = json.loads(line[5:].strip())
                sub.rounds.append((round_["feed_id"], int(round_["round_id"]), time.time()))
        sub.end_reason = sub.end_reason or ("stopped" if self.stop.is_set() else "stream ended")


# --- the scenario -----------------------------------------------------------------------------

class Rig:
    def __init__(self, pcx: Path, keep_logs: bool):
        self.pcx = pcx
        self.keep_logs = keep_logs
        self.logs = Path(tempfile.mkdtemp(prefix="pcx-replicas-logs-"))
        self.pg: PgCluster | None = None
        self.replicas: list[Replica] = []
        self.proxy: multiprocessing.Process | None = None
        self.agents: list[subprocess.Popen] = []
        self.agent_logs = []
        self.data_dir = self.logs / "data"

    def close(self, failed: bool) -> None:
        for agent in self.agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
        for agent in self.agents:
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        for f in self.agent_logs:
            f.close()
        for replica in self.replicas:
            replica.stop()
        if self.proxy is not None and self.proxy.is_alive():
            self.proxy.terminate()
            self.proxy.join(timeout=5)
            if self.proxy.is_alive():
                self.proxy.kill()
                self.proxy.join()
        if self.pg is not None:
            if self.keep_logs or failed:
                try:
                    shutil.copy(self.pg.log, self.logs / "postgres.log")
                except OSError:
                    pass
            self.pg.destroy()
        if self.keep_logs or failed:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            print(f"logs kept in {self.logs}", flush=True)
        else:
            shutil.rmtree(self.logs, ignore_errors=True)

    # -- setup --

    def start(self) -> str:
        self.pg = PgCluster()
        note(f"private PostgreSQL {self.pg.bin.parent.name} cluster on 127.0.0.1:{self.pg.port} ({self.pg.dir})")
        self.data_dir.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PCX_") and k not in ("DATABASE_URL",)}
        env.update(NO_RATE_LIMITS)
        env.update(
            DATABASE_URL=self.pg.url,
            PCX_DATA_DIR=str(self.data_dir),
            PCX_ADMIN_API_KEY=ADMIN_KEY,
            PCX_MIN_CADENCE_SECS="10",
            PCX_SETTLEMENT_TICK_MS="200",
            PCX_WORKER_LEASE_SECS=str(LEASE_SECS),
            PCX_OUTAGE_AFTER_SECS="3",
            PCX_ORACLE_TICK_MS="250",
            PCX_ORACLE_HEARTBEAT_SECS="2",
            PCX_DEV_KEYS="true",
            PCX_OFFER_CAPACITY_CHECK="off",
            PCX_LOG="info",
        )
        self.replicas = [Replica(i, self.pcx, env, self.logs) for i in range(REPLICAS)]
        # All three at once on the fresh database: they race through migrations, secrets and setups.
        for replica in self.replicas:
            replica.start()
        for replica in self.replicas:
            self.wait_healthy(replica, 120)
        parent, child = multiprocessing.get_context("fork").Pipe()
        self.proxy = multiprocessing.get_context("fork").Process(
            target=proxy_main, args=([r.port for r in self.replicas], child), daemon=True)
        self.proxy.start()
        if not parent.poll(10):
            raise SystemExit("the proxy did not start")
        port = parent.recv()
        return f"http://127.0.0.1:{port}"

    def wait_healthy(self, replica: Replica, within: float) -> float:
        started = time.time()
        while time.time() - started < within:
            replica.check_alive()
            if replica.process is None:
                raise SystemExit(f"replica {replica.index} exited; log: {replica.log_path}")
            try:
                if requests.get(replica.base + "/health", timeout=2).status_code == 200:
                    return time.time() - started
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SystemExit(f"replica {replica.index} not healthy within {within:.0f} s; log: {replica.log_path}")

    def start_agent(self, base: str, name: str, api_key: str) -> Path:
        log_path = self.logs / f"agent-{name}.log"
        log = open(log_path, "w")
        self.agent_logs.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PCX_")}
        env.update(PCX_API_KEY=api_key, PCX_LOG="info")
        keys = self.logs / f"agent-{name}-keys"
        self.agents.append(subprocess.Popen(
            [str(self.pcx), "prover", "--exchange", base, "--sizes", "10", "--claim-wait-secs", "2",
             "--workers", "1", "--backend", "cpu", "--keys-dir", str(keys)],
            env=env, stdout=log, stderr=subprocess.STDOUT))
        return log_path


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def internal_errors(logs: list[Path]) -> dict[str, int]:
    """The causes of the 500s the replicas logged (`internal error ... cause=...`)."""
    causes: dict[str, int] = {}
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            line = ANSI.sub("", line)
            if "internal error" in line:
                cause = line.split("cause=", 1)[1].strip() if "cause=" in line else line[-120:]
                causes[cause] = causes.get(cause, 0) + 1
    return causes


def get_json(base: str, path: str, bearer: str | None = None, tries: int = 20):
    """GET with retries (through the proxy a replica may be down a moment)."""
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


def current_holder(monitors: list[HealthMonitor]) -> int | None:
    now = time.time()
    holders = [i for i, m in enumerate(monitors)
               if (s := m.latest()) is not None and s.holds and now - s.t1 < 0.5]
    return holders[0] if len(holders) == 1 else None


def run(pcx: Path, skip_throughput: bool, keep_logs: bool) -> None:
    rig = Rig(pcx, keep_logs)
    failed = True
    stop_watching = threading.Event()
    try:
        t_script = time.time()
        base = rig.start()
        replicas = rig.replicas
        note(f"three replicas on ports {[r.port for r in replicas]}, proxy at {base}; logs in {rig.logs}")

        # One signer and one JWT secret for all.
        signers = {get_json(r.base, "/v1/oracle/signer")["address"] for r in replicas}
        admin = token(base, ADMIN_KEY)
        cross = [requests.get(r.base + "/v1/admin/ledger/summary", headers={"Authorization": f"Bearer {admin}"},
                              timeout=10).status_code for r in replicas]
        report("shared secrets", len(signers) == 1 and cross == [200] * REPLICAS,
               f"oracle signers of the three replicas: {sorted(signers)}; one admin token on each: {cross}")

        monitors = [HealthMonitor(r, stop_watching) for r in replicas]
        watchers = [SseWatcher(r, stop_watching) for r in replicas]

        provers = {}
        for name, price in (("alice", "0.008"), ("bob", "0.01")):
            p = account(base, admin, name, "prover", STAKE)
            call(base, "POST", "/v1/provers/stake", p["token"], {"amount": STAKE})
            offer(base, p["token"], 360, price, days=2, proof_class=CLASS)
            provers[name] = p
        buyer = account(base, admin, "rollup", "buyer", BUYER_DEPOSIT)
        agent_logs = [rig.start_agent(base, name, p["api_key"]) for name, p in provers.items()]
        give_up = time.time() + 180
        while not all("serving: claiming jobs" in log.read_text(errors="replace") for log in agent_logs):
            for agent, log in zip(rig.agents, agent_logs):
                if agent.poll() is not None:
                    raise SystemExit(f"agent exited with {agent.returncode}: {log.read_text()[-2000:]}")
            if time.time() > give_up:
                raise SystemExit(f"agents not serving within 180 s; logs {agent_logs}")
            time.sleep(0.5)
        note(f"agents serving {time.time() - t_script:.0f} s after the start")

        start = datetime.now(timezone.utc) + timedelta(seconds=8)
        end = start + timedelta(seconds=EVERY * SLOTS)
        quote = call(base, "POST", "/v1/quotes", buyer["token"], {
            "proof_class": CLASS, "redundancy": 1,
            "schedule": {"start": rfc3339(start), "end": rfc3339(end), "every_secs": EVERY}})
        contract = call(base, "POST", "/v1/contracts", buyer["token"], {"quote_id": quote["quote_id"]})
        cid = contract["contract_id"]
        for n in range(SLOTS):
            call(base, "PUT", f"/v1/contracts/{cid}/slots/{n}/input", buyer["token"], {"public_input": str(n + 5)},
                 expect=(200,))
        note(f"contract {cid}: {SLOTS} slots every {EVERY} s from {rfc3339(start)}, one backup, "
             f"price {contract['price_per_proof']}, total {contract['total']}")

        # --- kills and the outage, while the slots settle ---
        end_ts = end.timestamp()
        mid_ts = start.timestamp() + (end_ts - start.timestamp()) / 2
        kills: list[dict] = []
        outage: dict | None = None
        rounds = 0
        while time.time() < end_ts - 5:
            time.sleep(random.uniform(8, 10))
            if outage is None and time.time() >= mid_ts - 5:
                outage = database_outage(rig, monitors, buyer["token"])
                continue
            holder = current_holder(monitors)
            if rounds % 2 == 0 and holder is not None:
                victim = holder
            else:
                victim = random.choice([i for i in range(REPLICAS) if i != holder])
            t_kill = time.time()
            replicas[victim].kill9()
            pause = random.uniform(1, 3)
            time.sleep(pause)
            replicas[victim].start()
            kills.append({"victim": victim, "holder": holder == victim, "at": t_kill, "down": time.time() - t_kill})
            note(f"kill -9 replica {victim}{' (the lease holder)' if holder == victim else ''} at {stamp(t_kill)}, "
                 f"restarted after {pause:.1f} s")
            rounds += 1

        # --- every slot final ---
        give_up = time.time() + 120
        while True:
            slots = get_json(base, f"/v1/contracts/{cid}/slots?limit={SLOTS}", buyer["token"])["slots"]
            if len(slots) == SLOTS and all(s["state"] not in ("scheduled", "proving") for s in slots):
                break
            if time.time() > give_up:
                raise SystemExit(f"slots not final 120 s after the contract's end: {slots}")
            time.sleep(0.5)
        for replica in replicas:
            rig.wait_healthy(replica, 60)
        last_restart = max([k["at"] + k["down"] for k in kills] + [t_script])
        listen_until = max(last_restart + 8, time.time() + 3)
        time.sleep(max(0.0, listen_until - time.time()))
        stopped_at = time.time()
        stop_watching.set()
        for w in watchers:
            w.thread.join(timeout=8)
        for m in monitors:
            m.thread.join(timeout=3)

        check_kills(kills, monitors)
        check_outage(outage)
        check_settlement(base, admin, buyer, provers, cid, slots, contract)
        published = check_oracle(base, t_script)
        check_sse(watchers, published, stopped_at)
        for replica in replicas:
            replica.check_alive()
        panics = [f"replica {r.index}: {line.strip()}" for r in replicas
                  for line in r.log_path.read_text(errors="replace").splitlines() if "panicked" in line]
        internal = internal_errors([r.log_path for r in replicas])
        exits = [e for r in replicas for e in r.unexpected_exits]
        agent_exits = [f"agent {i} exited {a.returncode}" for i, a in enumerate(rig.agents) if a.poll() is not None]
        report("processes", not panics and not exits and not agent_exits,
               f"replica starts {[r.starts for r in replicas]}; panics in the logs: {panics[:3] or 'none'}; "
               f"exits we did not cause: {exits + agent_exits or 'none'}; `internal error` (500) lines in the "
               f"replicas' logs, by cause: {internal or 'none'}")

        if not skip_throughput:
            throughput(base, replicas[0], buyer["token"])
        failed = not all(held for _, held, _ in RESULTS)
    finally:
        stop_watching.set()
        rig.close(failed)


# --- the outage -------------------------------------------------------------------------------

def database_outage(rig: Rig, monitors: list[HealthMonitor], buyer_token: str) -> dict:
    for replica in rig.replicas:
        rig.wait_healthy(replica, 60)
    feed = "groth16-bn254:hash-chain:10:60"
    feeds = [f["feed_id"] for f in get_json(rig.replicas[0].base, "/v1/oracle/feeds")["feeds"]
             if f.get("latest_round_id")]
    if feeds and feed not in feeds:
        feed = feeds[0]
    db = [Poller(r, "/v1/accounts/me/balances", buyer_token, 0.05) for r in rig.replicas]
    latest = [Poller(r, f"/v1/oracle/prices/latest?feed={feed}", None, 0.2) for r in rig.replicas]
    listed = [Poller(r, "/v1/oracle/feeds", None, 0.5) for r in rig.replicas]
    time.sleep(2)
    t_stop0 = time.time()
    rig.pg.stop("fast")
    t_stop1 = time.time()
    note(f"database stopped at {stamp(t_stop0)} (pg_ctl took {t_stop1 - t_stop0:.2f} s)")
    time.sleep(max(0.0, t_stop1 + OUTAGE_SECS - time.time()))
    alive_during = [r.alive() for r in rig.replicas]
    t_start0 = time.time()
    rig.pg.start()
    t_start1 = time.time()
    note(f"database started at {stamp(t_start0)}, accepting connections at {stamp(t_start1)}")
    give_up = time.time() + 60
    while time.time() < give_up:
        if all(any(p.status == 200 and p.t0 >= t_start1 for p in poller.snapshot()) for poller in db):
            break
        time.sleep(0.1)
    time.sleep(2)
    return {
        "t_stop0": t_stop0, "t_stop1": t_stop1, "t_start0": t_start0, "t_start1": t_start1,
        "db": [p.finish() for p in db], "latest": [p.finish() for p in latest], "feeds": [p.finish() for p in listed],
        "health": [m.since(t_stop0 - 2) for m in monitors], "alive": alive_during, "feed": feed,
    }


def check_outage(outage: dict | None) -> None:
    if outage is None:
        report("database outage", False, "the contract ended before the outage could run")
        return
    t_stop0, t_stop1, t_start0, t_start1 = (outage[k] for k in ("t_stop0", "t_stop1", "t_start0", "t_start1"))
    problems: list[str] = []
    edge_problems: list[str] = []
    known: list[float] = []
    edge: list[Probe] = []
    recoveries: list[float] = []
    first_503: list[float] = []
    counts: dict[int, int] = {}
    for i, probes in enumerate(outage["db"]):
        recovered = next((p for p in probes if p.t0 >= t_start1 and p.status == 200), None)
        if recovered is None:
            problems.append(f"replica {i}: never 200 again after the database returned")
        else:
            recoveries.append(recovered.t1 - t_start1)
        back_at = recovered.t0 if recovered else float("inf")
        first = next((p.t1 for p in probes if p.status == 503 and p.t0 >= t_stop0), None)
        if first is not None:
            first_503.append(first - t_stop0)
        for p in probes:
            counts[p.status] = counts.get(p.status, 0) + 1
            took = p.t1 - p.t0
            if p.status == 0:
                problems.append(f"replica {i}: {p.error} at {stamp(p.t0)}")
            elif p.status == 503 and (p.retry_after is None or p.code != "unavailable"):
                problems.append(f"replica {i}: a 503 at {stamp(p.t0)} with Retry-After {p.retry_after!r}, code {p.code!r}")
            if p.t1 < t_stop0:
                if p.status != 200:
                    problems.append(f"replica {i}: {p.status} before the outage")
            elif p.t0 < t_stop1 + 1.0:
                # Under way when the database went, or sent before the replica's probe (every 500 ms) noticed.
                edge.append(p)
                if p.status not in (200, 503):
                    edge_problems.append(f"replica {i}: {p.status} `{p.code}` at {stamp(p.t0)} (after {took:.2f} s)")
                if took >= 5:
                    edge_problems.append(f"replica {i}: sent at {stamp(p.t0)}, answered {p.status} after {took:.2f} s")
            elif p.t0 < back_at:
                known.append(took)
                if p.status != 503:
                    problems.append(f"replica {i}: {p.status} at {stamp(p.t0)} while the database was down")
                if took >= 1.0:
                    problems.append(f"replica {i}: a 503 at {stamp(p.t0)} took {took:.2f} s")
            elif p.t0 > back_at + 1.0 and p.status != 200:
                problems.append(f"replica {i}: {p.status} at {stamp(p.t0)}, after it had recovered at {stamp(back_at)}")
    memory_statuses: dict[int, int] = {}
    for kind in ("latest", "feeds"):
        for i, probes in enumerate(outage[kind]):
            for p in probes:
                memory_statuses[p.status] = memory_statuses.get(p.status, 0) + 1
                if t_stop0 <= p.t0 <= t_start1 and p.status != 200:
                    problems.append(f"replica {i}: {kind} answered {p.status} ({p.code} {p.error}) at {stamp(p.t0)} during the outage")
    health_down = {}
    for i, samples in enumerate(outage["health"]):
        down = [s for s in samples if t_stop1 + 1.0 <= s.t0 < t_start0]
        health_down[i] = sorted({(s.status, s.retry_after) for s in down})
        if not down or any(s.status != 503 or not s.retry_after for s in down):
            problems.append(f"replica {i}: /health during the outage answered {health_down[i]} (503 with Retry-After expected)")
    if not all(outage["alive"]):
        problems.append(f"replicas alive during the outage: {outage['alive']}")
    known_ms = [t * 1000 for t in known]
    report("database outage", not problems,
           f"database down {t_start1 - t_stop0:.1f} s (pg_ctl stop -m fast .. start -w); GET /v1/accounts/me/balances "
           f"sent to each replica every 50 ms: statuses {dict(sorted(counts.items()))}; first fast 503 "
           f"{', '.join(f'{t:.2f}' for t in first_503)} s after the stop; once the outage was known: {len(known)} answers, "
           f"all 503 `unavailable` with Retry-After: {'yes' if not any('503' in x or 'while' in x for x in problems) else 'no'}, "
           f"p50 {percentile(known_ms, 50):.1f} ms, p99 {percentile(known_ms, 99):.1f} ms, max {max(known_ms, default=float('nan')):.1f} ms; "
           f"200 again {', '.join(f'{t:.2f}' for t in recoveries)} s after the database accepted connections (longest "
           f"{max(recoveries, default=float('nan')):.2f} s); latest price ({outage['feed']}) and feeds meanwhile: "
           f"{dict(sorted(memory_statuses.items()))}; /health meanwhile (status, Retry-After): {health_down}; "
           f"problems: {problems[:6] or 'none'}")
    edge_statuses: dict[str, int] = {}
    for p in edge:
        key = f"{p.status}" + (f" {p.code}" if p.code else "")
        edge_statuses[key] = edge_statuses.get(key, 0) + 1
    slow = [p.t1 - p.t0 for p in edge if p.t1 - p.t0 >= 2]
    report("outage edge", not edge_problems,
           f"requests under way at the stop or sent before the replica's probe noticed (stop .. +{t_stop1 + 1.0 - t_stop0:.1f} s): "
           f"{len(edge)}, answers {edge_statuses}, {len(slow)} of them took 2 s or more (max "
           f"{max((p.t1 - p.t0 for p in edge), default=float('nan')):.2f} s); problems: {edge_problems[:6] or 'none'}")


# --- the kills --------------------------------------------------------------------------------

def check_kills(kills: list[dict], monitors: list[HealthMonitor]) -> None:
    handovers = []
    problems = []
    for k in kills:
        if not k["holder"]:
            continue
        took = None
        for i, m in enumerate(monitors):
            for s in m.since(k["at"]):
                if s.holds:
                    if took is None or s.t1 - k["at"] < took[0]:
                        took = (s.t1 - k["at"], i)
                    break
        if took is None:
            problems.append(f"after the kill at {stamp(k['at'])} no replica said it holds the lease")
        else:
            handovers.append(took)
    # At most one holder at a time: every 100 ms, the replicas whose last answer (under 300 ms old) says so.
    samples = [[s for s in m.samples] for m in monitors]
    begin = min(s[0].t0 for s in samples if s)
    finish = max(s[-1].t1 for s in samples if s)
    idx = [0] * len(samples)
    overlap_bins = 0
    longest = current = 0
    t = begin
    while t < finish:
        n = 0
        for r, ss in enumerate(samples):
            while idx[r] + 1 < len(ss) and ss[idx[r] + 1].t1 <= t:
                idx[r] += 1
            s = ss[idx[r]] if ss else None
            if s is not None and s.t1 <= t and t - s.t1 < 0.3 and s.holds:
                n += 1
        if n > 1:
            overlap_bins += 1
            current += 1
            longest = max(longest, current)
        else:
            current = 0
        t += 0.1
    if longest * 0.1 > 1.0:
        problems.append(f"two replicas said they hold the lease for {longest * 0.1:.1f} s in a row")
    holder_kills = sum(1 for k in kills if k["holder"])
    if holder_kills == 0:
        problems.append("the lease holder was never killed")
    times = [h[0] for h in handovers]
    report("lease handover", not problems,
           f"PCX_WORKER_LEASE_SECS={LEASE_SECS} (default 15); {len(kills)} kills -9, {holder_kills} of the holder; "
           f"seconds from each holder kill until a replica's /health said it holds the lease: "
           f"{', '.join(f'{t:.2f} (replica {i})' for t, i in handovers)}; median {statistics.median(times) if times else float('nan'):.2f}, "
           f"max {max(times, default=float('nan')):.2f}; two replicas saying they hold it at once: "
           f"{overlap_bins * 0.1:.1f} s in all, longest {longest * 0.1:.1f} s; problems: {problems or 'none'}")


# --- settlement and money ---------------------------------------------------------------------

def ledger(base: str, bearer: str) -> list[dict]:
    lines, before = [], None
    while True:
        page = get_json(base, "/v1/accounts/me/ledger?limit=500" + (f"&before={before}" if before else ""), bearer)
        lines += page["entries"]
        before = page.get("next_before")
        if not before:
            return lines


def check_settlement(base: str, admin: str, buyer: dict, provers: dict, cid: str, slots: list[dict],
                     contract: dict) -> None:
    problems = []
    states: dict[str, int] = {}
    delivered = []
    for s in slots:
        key = f"{s['state']}/{s.get('reason')}"
        states[key] = states.get(key, 0) + 1
        if s["state"] == "delivered":
            delivered.append(s)
            if s.get("delivered_by") not in [s["primary"], *s["backups"]]:
                problems.append(f"slot {s['n']} delivered by {s.get('delivered_by')}, not its primary or backup")
        elif not (s["state"] == "missed" and s.get("reason") in ("exchange_late", "exchange_down")):
            problems.append(f"slot {s['n']} ended {s['state']} ({s.get('reason')}) with two honest provers")
    if len(delivered) < SLOTS // 2:
        problems.append(f"only {len(delivered)} of {SLOTS} slots delivered")

    # The buyer: charged the locked price of each delivered slot, once; refunded the others, once.
    b_lines = ledger(base, buyer["token"])
    b_bal = get_json(base, "/v1/accounts/me/balances", buyer["token"])
    seen: dict[tuple, int] = {}
    for line in b_lines:
        k = (line["kind"], line["reference"], line["account"])
        seen[k] = seen.get(k, 0) + 1
    twice = [k for k, n in seen.items() if n > 1]
    if twice:
        problems.append(f"buyer's ledger lines twice: {twice[:3]}")
    paid = {line["reference"] for line in b_lines if line["kind"] == "slot_payment"}
    refunded = {line["reference"] for line in b_lines if line["kind"] == "refund"}
    want_paid = {f"slot:{cid}/{s['n']}" for s in delivered}
    want_refunded = {f"refund:{cid}/{s['n']}" for s in slots if s["state"] != "delivered"}
    if paid != want_paid:
        problems.append(f"buyer's payments {sorted(paid ^ want_paid)[:4]} differ from the delivered slots")
    if refunded != want_refunded:
        problems.append(f"buyer's refunds {sorted(refunded ^ want_refunded)[:4]} differ from the missed slots")
    charged = Decimal(BUYER_DEPOSIT) - Decimal(b_bal["available"]) - Decimal(b_bal["escrow"])
    due = sum((Decimal(s["price_per_proof"]) * contract.get("proofs_per_slot", 1) for s in delivered), Decimal(0))
    if charged != due or Decimal(b_bal["escrow"]) != 0:
        problems.append(f"buyer charged {charged} with {b_bal['escrow']} in escrow; the delivered slots cost {due}")

    # The provers: stake whole, no slash in their ledgers, nothing missed in their reputation.
    figures = []
    for name, p in provers.items():
        bal = get_json(base, "/v1/accounts/me/balances", p["token"])
        lines = ledger(base, p["token"])
        kinds: dict[str, int] = {}
        for line in lines:
            kinds[line["kind"]] = kinds.get(line["kind"], 0) + 1
        rep = get_json(base, f"/v1/provers/{p['account_id']}/reputation")
        missed = sum(c["missed"] for c in rep["classes"])
        got = sum(1 for s in delivered if s.get("delivered_by") == p["account_id"])
        pay_lines = sum(1 for line in lines if line["kind"] == "slot_payment")
        if Decimal(bal["bonded"]) != Decimal(STAKE) or "slash" in kinds or missed:
            problems.append(f"{name}: bonded {bal['bonded']}, ledger kinds {kinds}, reputation missed {missed}")
        if pay_lines != got:
            problems.append(f"{name}: {pay_lines} payments in its ledger for {got} deliveries")
        figures.append(f"{name} delivered {got}, bonded {bal['bonded']}, available {bal['available']}, "
                       f"missed {missed}")

    summary = get_json(base, "/v1/admin/ledger/summary", admin)
    if not summary["balanced"] or Decimal(summary["totals"]["escrow"]) != 0 or summary["unbalanced_entries"] \
            or summary["drifted_balances"]:
        problems.append(f"ledger summary {summary}")
    report("settlement", not problems,
           f"{SLOTS} slots: {states}; buyer charged {charged} for {len(delivered)} deliveries (due {due}), "
           f"{len(paid)} payments and {len(refunded)} refunds in its ledger, escrow {b_bal['escrow']}; "
           f"{'; '.join(figures)}; ledger summary balanced={summary['balanced']}, escrow {summary['totals']['escrow']}, "
           f"fees {summary['totals']['fees']}, {summary['entry_count']} entries; problems: {problems[:6] or 'none'}")


# --- the oracle -------------------------------------------------------------------------------

def check_oracle(base: str, since: float) -> list[tuple[str, int, float]]:
    """Every feed's history, paged: round ids 1, 2, 3, ... without gaps or repeats. Returns every round."""
    feeds = get_json(base, "/v1/oracle/feeds")["feeds"]
    problems = []
    published: list[tuple[str, int, float]] = []
    figures = []
    pages_total = 0
    pause = [0.0, 0.0]  # the longest time between two rounds of a feed, and when it began
    for f in feeds:
        if not f.get("latest_round_id"):
            continue
        feed = f["feed_id"]
        frm = rfc3339(datetime.fromtimestamp(since - 3600, timezone.utc))
        rounds: list[dict] = []
        boundary: set[tuple[int, str]] = set()
        while True:
            page = get_json(base, f"/v1/oracle/history?feed={requests.utils.quote(feed)}&from="
                                  f"{requests.utils.quote(frm)}&limit=200")["rounds"]
            pages_total += 1
            fresh = [r for r in page if (r["round_id"], r["published_at"]) not in boundary]
            rounds += fresh
            if len(page) < 200:
                break
            if not fresh:
                problems.append(f"{feed}: cannot page past {frm}")
                break
            frm = page[-1]["published_at"]
            boundary = {(r["round_id"], r["published_at"]) for r in page if r["published_at"] == frm}
        ids = [r["round_id"] for r in rounds]
        times = [parse_time(r["published_at"]) for r in rounds]
        gaps = [(a, b) for a, b in zip(ids, ids[1:]) if b != a + 1]
        back = [(ids[i], ids[i + 1]) for i in range(len(ids) - 1) if times[i + 1] < times[i]]
        latest = get_json(base, "/v1/oracle/feeds")["feeds"]
        latest_id = next(x["latest_round_id"] for x in latest if x["feed_id"] == feed)
        if not ids or ids[0] != 1 or gaps or len(set(ids)) != len(ids):
            problems.append(f"{feed}: ids {ids[:3]}..{ids[-3:]}, gaps or repeats {gaps[:5]}")
        if back:
            problems.append(f"{feed}: later round ids published earlier {back[:3]}")
        if ids and latest_id < ids[-1]:
            problems.append(f"{feed}: latest round {latest_id} behind the history's {ids[-1]}")
        published += [(feed, i, t) for i, t in zip(ids, times)]
        figures.append((len(ids), ids[-1] if ids else None))
        for a, b in zip(times, times[1:]):
            if b - a > pause[0]:
                pause[:] = [b - a, a]
    if not published:
        problems.append("no feed has rounds")
    shapes: dict[tuple, int] = {}
    for shape in figures:
        shapes[shape] = shapes.get(shape, 0) + 1
    report("oracle history", not problems,
           f"{len(figures)} feeds with rounds: "
           + ", ".join(f"{n} with {count} rounds, ids 1..{last}" for (count, last), n in sorted(shapes.items()))
           + f" ({pages_total} pages of at most 200, strictly increasing, no gap, no repeat, published in id order; "
           f"PCX_ORACLE_HEARTBEAT_SECS=2, longest pause between two rounds {pause[0]:.1f} s from {stamp(pause[1])}); "
           f"problems: {problems[:6] or 'none'}")
    return published


def check_sse(watchers: list[SseWatcher], published: list[tuple[str, int, float]], stopped_at: float) -> None:
    problems = []
    figures = []
    for w in watchers:
        subs = w.subscriptions
        for sub in subs:
            last: dict[str, int] = {}
            for feed, rid, _ in sub.rounds:
                if feed in last and rid <= last[feed]:
                    problems.append(f"replica {sub.replica}: {feed} round {rid} after {last[feed]}")
                last[feed] = rid
            if sub.status != 200:
                problems.append(f"replica {sub.replica}: the stream answered {sub.status} at {stamp(sub.connected)}")
        if not subs:
            problems.append(f"replica {w.replica.index}: never subscribed")
            continue
        sub = subs[-1]
        heard = {(f, r) for f, r, _ in sub.rounds}
        frm = sub.connected + 2
        to = min(sub.ended or stopped_at, stopped_at) - 1
        expected = [(f, r) for f, r, t in published if frm < t < to]
        missed = [x for x in expected if x not in heard]
        if not sub.rounds or not expected:
            problems.append(f"replica {w.replica.index}: its last subscription heard {len(sub.rounds)} rounds "
                            f"({len(expected)} published while it listened)")
        if missed:
            problems.append(f"replica {w.replica.index}: its last subscriber missed {len(missed)} of "
                            f"{len(expected)} rounds: {missed[:4]}")
        figures.append(f"replica {w.replica.index}: {len(subs)} subscriptions, {sum(len(s.rounds) for s in subs)} "
                       f"rounds; the last since {stamp(sub.connected)}: {len(sub.rounds)} rounds, "
                       f"{len(expected) - len(missed)}/{len(expected)} of those published meanwhile")
    report("oracle stream", not problems, f"{'; '.join(figures)}; problems: {problems[:6] or 'none'}")


# --- throughput -------------------------------------------------------------------------------

def load(base: str, bearer: str, feed: str, seconds: float = 20, clients: int = 16) -> dict:
    start = datetime.now(timezone.utc) + timedelta(hours=1)
    quote_body = {"proof_class": CLASS, "redundancy": 0,
                  "schedule": {"start": rfc3339(start), "end": rfc3339(start + timedelta(hours=2)), "every_secs": 600}}
    auth = {"Authorization": f"Bearer {bearer}"}
    ops = [
        ("GET", "/v1/offers", None, {}),
        ("GET", f"/v1/oracle/prices/latest?feed={feed}", None, {}),
        ("GET", "/v1/accounts/me/balances", None, auth),
        ("POST", "/v1/quotes", quote_body, auth),
    ]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[dict] = [{} for _ in range(clients)]
    go = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(c: int):
        session = requests.Session()
        go.wait()
        i = c
        while time.time() < deadline[0]:
            method, path, body, headers = ops[i % len(ops)]
            i += 1
            t0 = time.perf_counter()
            try:
                r = session.request(method, base + path, json=body, headers=headers, timeout=30)
                ok = r.status_code < 400
                if not ok:
                    errors[c][str(r.status_code)] = errors[c].get(str(r.status_code), 0) + 1
            except requests.RequestException as err:
                session = requests.Session()
                errors[c][type(err).__name__] = errors[c].get(type(err).__name__, 0) + 1
            latencies[c].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    deadline[0] = time.time() + seconds
    t0 = time.time()
    go.wait()
    for t in threads:
        t.join()
    took = time.time() - t0
    all_lat = [x for per in latencies for x in per]
    merged: dict[str, int] = {}
    for e in errors:
        for k, v in e.items():
            merged[k] = merged.get(k, 0) + v
    return {"rps": len(all_lat) / took, "p50": percentile(all_lat, 50) * 1000, "p99": percentile(all_lat, 99) * 1000,
            "requests": len(all_lat), "errors": merged}


def throughput(base: str, one: Replica, bearer: str) -> None:
    feeds = [f["feed_id"] for f in get_json(base, "/v1/oracle/feeds")["feeds"] if f.get("latest_round_id")]
    feed = feeds[0] if feeds else "groth16-bn254:hash-chain:10:60"
    direct = load(one.base, bearer, feed)
    proxied = load(base, bearer, feed)
    ratio = proxied["rps"] / direct["rps"] if direct["rps"] else float("nan")
    fmt = lambda r: (f"{r['rps']:.0f} req/s ({r['requests']} in 20 s), p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "  # noqa: E731
                     f"errors {r['errors'] or 0}")
    held = not direct["errors"] and not proxied["errors"]
    report("throughput", held,
           f"16 clients, mix GET /v1/offers, GET /v1/oracle/prices/latest, GET balances, POST /v1/quotes; "
           f"one replica directly: {fmt(direct)}; the proxy over three: {fmt(proxied)}; three/one {ratio:.2f} "
           f"({os.cpu_count()} CPUs shared by the clients, the Python proxy, three replicas and PostgreSQL)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pcx", type=Path, default=ROOT / "target" / "release" / "pcx")
    parser.add_argument("--skip-throughput", action="store_true", help="leave out the throughput figure")
    parser.add_argument("--keep-logs", action="store_true", help="keep the replicas' and agents' logs")
    args = parser.parse_args()
    if not os.access(args.pcx, os.X_OK):
        raise SystemExit(f"no pcx binary at {args.pcx}")

    def terminate(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    started = time.time()
    try:
        run(args.pcx.resolve(), args.skip_throughput, args.keep_logs)
    except SystemExit as err:
        if err.code not in (None, 0):
            report("run", False, str(err.code))
    print(f"\nsummary ({time.time() - started:.0f} s):")
    for check, held, figures in RESULTS:
        print(f"  {'held  ' if held else 'BROKEN'} {check}: {figures}")
    return 0 if RESULTS and all(held for _, held, _ in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the outsider's tools share: `pcx serve` on a fresh database of its own, and a seeded market.

`fuzz.py` and `attacks.py` start the server through `Server` (settings as the caller asks, a
temporary data directory, a database created on the machine's PostgreSQL and dropped after) and
talk to it over real HTTP only, as a stranger on the network would.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import requests

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "pcx_admin_outsider_" + uuid.uuid4().hex
# Rate limits high enough that one address can drive every route (the attacks that test the
# limits themselves start a server with the defaults).
NO_RATE_LIMITS = {
    "PCX_RATE_AUTH_PER_MIN": "1000000",
    "PCX_RATE_ORACLE_PER_SEC": "1000000",
    "PCX_RATE_QUOTES_PER_MIN": "1000000",
}


def admin_database_url() -> str:
    """The PostgreSQL server the tools create their databases on (PCX_OUTSIDER_DATABASE_URL)."""
    return os.environ.get("PCX_OUTSIDER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path="/" + name))


def psql(url: str, sql: str) -> str:
    done = subprocess.run(["psql", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                          check=True, capture_output=True, text=True)
    return done.stdout


RESULTS: list[tuple[str, bool, str]] = []
"""Every check a tool reported: (name, held, figures)."""


def report(check: str, held: bool, figures: str) -> None:
    """Records a check and prints its line (`[held]` or `[BROKEN]`)."""
    RESULTS.append((check, held, figures))
    print(f"[{'held' if held else 'BROKEN'}] {check}: {figures}", flush=True)


def note(text: str) -> None:
    """A line of progress under the checks."""
    print(f"    {text}", flush=True)


def parse_time(text: str) -> float:
    """An RFC 3339 time as pcx writes it (any number of fractional digits) -> seconds since the epoch."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return base.timestamp() + (float("0." + m.group(2)) if m.group(2) else 0.0)


def stamp(t: float | None) -> str:
    """Seconds since the epoch as HH:MM:SS.mmm (UTC); `-` for none."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Server:
    """`pcx serve` on a fresh database and a port of its own; `settings` are PCX_* variables
    (None: unset, e.g. to let the server generate a secret)."""

    def __init__(self, pcx: Path, settings: dict[str, str | None], name: str = "outsider"):
        self.admin_url = admin_database_url()
        self.db_name = f"pcx_{name}_{os.getpid()}"
        self.database_url = with_database(self.admin_url, self.db_name)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"pcx-{name}-"))
        self.log_path = self.data_dir / "serve.log"
        psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.db_name}")
        psql(self.admin_url, f"CREATE DATABASE {self.db_name}")
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.database_url,
            PCX_LISTEN=f"127.0.0.1:{self.port}",
            PCX_DATA_DIR=str(self.data_dir),
            PCX_ADMIN_API_KEY=ADMIN_KEY,
            PCX_ORACLE_TICK_MS="1000",
            PCX_LOG=os.environ.get("PCX_LOG", "info"),
        )
        for name, value in settings.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([str(pcx), "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"pcx serve exited with {self.process.returncode}; log: {self.log_path}")
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SystemExit(f"pcx serve did not become healthy in 120 s; log: {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        psql(self.admin_url, f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def panics(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if "panicked" in line]

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


def call(base: str, method: str, path: str, token: str | None = None, body=None, expect=(200, 201)):
    """One request of the seeding; anything but `expect` stops the tool with the answer."""
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = requests.request(method, base + path, json=body, headers=headers, timeout=120)
    if response.status_code not in expect:
        raise SystemExit(f"seeding: {method} {path} answered {response.status_code}: {response.text}")
    return response.json()


def token(base: str, api_key: str) -> str:
    return call(base, "POST", "/v1/auth/token", body={"api_key": api_key})["token"]


def account(base: str, admin: str, name: str, role: str, deposit: str = "100000") -> dict:
    """A funded account with a token: {account_id, api_key, token, ...}."""
    created = call(base, "POST", "/v1/accounts", body={"name": name, "role": role})
    created["token"] = token(base, created["api_key"])
    call(base, "POST", "/v1/admin/deposits", admin, {"account_id": created["account_id"], "amount": deposit})
    return created


HASH_CHAIN_10 = {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 10, "deadline_secs": 600}


def offer(base: str, prover_token: str, proofs_per_hour: int, price: str, days: int = 30,
          proof_class: dict = HASH_CHAIN_10) -> dict:
    now = datetime.now(timezone.utc)
    return call(base, "POST", "/v1/offers", prover_token, {
        "proof_class": proof_class,
        "window_start": rfc3339(now),
        "window_end": rfc3339(now + timedelta(days=days)),
        "proofs_per_hour": proofs_per_hour,
        "price_per_proof": price,
    })


def buy(base: str, buyer_token: str, start: datetime, term: timedelta, every_secs: int) -> dict:
    """Quotes hash-chain 2^10 on `every_secs` from `start` for `term` (no backup) and accepts it."""
    quote = call(base, "POST", "/v1/quotes", buyer_token, {
        "proof_class": HASH_CHAIN_10,
        "schedule": {"start": rfc3339(start), "end": rfc3339(start + term), "every_secs": every_secs},
        "redundancy": 0,
    })
    return call(base, "POST", "/v1/contracts", buyer_token, {"quote_id": quote["quote_id"]})


def market(base: str, name: str, proofs_per_hour: int = 60) -> dict[str, dict]:
    """A funded buyer, and a prover with stake and an offer of hash-chain 2^10 for 30 days."""
    admin = token(base, ADMIN_KEY)
    buyer = account(base, admin, f"{name}-buyer", "buyer")
    prover = account(base, admin, f"{name}-prover", "prover")
    call(base, "POST", "/v1/provers/stake", prover["token"], {"amount": "50000"})
    offer(base, prover["token"], proofs_per_hour, "1.25")
    return {"admin": {"token": admin}, "buyer": buyer, "prover": prover}


def seed(base: str) -> dict[str, dict]:
    """A market with a contract of hourly slots starting in two hours; returns the accounts."""
    accounts = market(base, "outsider")
    buy(base, accounts["buyer"]["token"], datetime.now(timezone.utc) + timedelta(hours=2), timedelta(days=2), 3600)
    return accounts

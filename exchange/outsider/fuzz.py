#!/usr/bin/env python3
"""Fuzzes pcx's HTTP API from its own OpenAPI document, the way a stranger would.

Starts `pcx serve` on a fresh database, seeds a small market (a buyer with a contract, a prover
with stake and an offer, oracle rounds), then runs schemathesis against `/openapi.json` three
times: as an anonymous caller, as the buyer, and as the prover. Each run checks that no answer
is a 5xx, that every status, content type and body is one the document declares, and
(`positive_data_acceptance`) how often a request the schema allows is refused. The oracle's SSE
stream, which schemathesis does not read, is checked here: each event must validate against the
document's `StreamEvent` schema.

Usage (from the repository root; `.ci/run` does this after the tests):

    python3 -m venv target/fuzz-venv
    target/fuzz-venv/bin/pip install -r exchange/outsider/requirements.txt
    target/fuzz-venv/bin/python exchange/outsider/fuzz.py [--pcx target/debug/pcx] [--max-examples 20]

Exits non-zero when a check fails; prints per caller the requests made and the failures.
Environment: PCX_OUTSIDER_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) is the
server on which a database `pcx_fuzz_<pid>` is created and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jsonschema_rs
import requests

from harness import NO_RATE_LIMITS, ROOT, Server, seed

# Checks every answer must pass. `positive_data_acceptance` is reported, not enforced: a schema
# cannot say "a start in the future" or "a quote id that exists", so some schema-valid requests
# are refused by design (see the printed ratio).
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def check_stream(base: str, spec: dict, seconds: float, outcome: dict) -> None:
    """Reads the SSE stream for `seconds`; every event must validate against StreamEvent."""
    schema = {"$ref": "#/components/schemas/StreamEvent", "components": spec["components"]}
    validator = jsonschema_rs.validator_for(schema)
    # Per kind, the schema of its data alone, whose errors name the field (oneOf's do not).
    data_validators = {
        variant["properties"]["event"]["enum"][0]:
            jsonschema_rs.validator_for({**variant["properties"]["data"], "components": spec["components"]})
        for variant in spec["components"]["schemas"]["StreamEvent"]["oneOf"]
    }
    seen: dict[str, int] = {}
    errors: list[str] = []
    deadline = time.time() + seconds
    try:
        with requests.get(base + "/v1/oracle/stream", stream=True, timeout=(5, 30)) as response:
            if response.headers.get("content-type", "").split(";")[0] != "text/event-stream":
                errors.append(f"content type {response.headers.get('content-type')}")
            event, data = None, []
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "" and event is not None:
                    message = {"event": event, "data": json.loads("\n".join(data)) if data else None}
                    seen[event] = seen.get(event, 0) + 1
                    if not validator.is_valid(message):
                        if event not in data_validators:
                            errors.append(f"an event of an undeclared kind: {event}")
                        for error in data_validators.get(event, validator).iter_errors(message["data"]):
                            errors.append(f"{event}: at {list(error.instance_path)}: {error.message[:200]}")
                    event, data = None, []
                if time.time() > deadline:
                    break
    except requests.RequestException as err:
        errors.append(f"stream: {err}")
    # One line per distinct mismatch (every round of every feed would repeat it).
    errors = sorted(set(errors))[:10]
    for needed in ("round", "heartbeat"):
        if needed not in seen:
            errors.append(f"no `{needed}` event in {seconds:.0f} s")
    outcome.update(seen=seen, errors=errors)


def fuzz(base: str, caller: str, token: str | None, args) -> int:
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", base + "/openapi.json",
        "--checks", CHECKS,
        "--max-examples", str(args.max_examples),
        # An agent's claim may wait 30 s for a job (long-poll).
        "--request-timeout", "45",
        "--workers", "1",
        "--seed", str(args.seed),
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--no-color",
        # The stream never ends (checked above instead).
        "--exclude-operation-id", "stream",
    ]
    if token:
        command += ["-H", f"Authorization: Bearer {token}",
                    # Revoking or rotating the key behind the token would end the run's session.
                    "--exclude-path-regex", "^/v1/accounts/me/api_keys/"]
    started = time.time()
    result = subprocess.run(command, capture_output=True, text=True)
    output = result.stdout + result.stderr
    print(f"\n===== schemathesis as {caller} ({time.time() - started:.0f} s, exit {result.returncode}) =====")
    print(output[-6000:] if result.returncode else "\n".join(output.splitlines()[-12:]))
    return result.returncode


def acceptance(base: str, caller: str, token: str, args, report_dir: Path) -> str:
    """Schema-valid requests only (`--mode positive`): how many the server accepts. Reported, not
    enforced (see CHECKS)."""
    har = report_dir / f"positive-{caller}.har"
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", base + "/openapi.json",
        "--mode", "positive", "--phases", "fuzzing", "--checks", "not_a_server_error",
        "--max-examples", str(args.max_examples), "--request-timeout", "45", "--workers", "1",
        "--seed", str(args.seed), "--generation-database", "none", "--suppress-health-check", "all",
        "--no-color", "--exclude-operation-id", "stream", "--report", "har", "--report-har-path", str(har),
        "-H", f"Authorization: Bearer {token}", "--exclude-path-regex", "^/v1/accounts/me/api_keys/",
        # Routes closed to this caller's role answer 403 whatever the body: not a schema question.
        "--exclude-path-regex", "^/v1/admin/",
    ]
    subprocess.run(command, capture_output=True, text=True)
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    refused: dict[str, int] = {}
    accepted = 0
    for entry in entries:
        status = entry["response"]["status"]
        if status < 400 or status in (401, 403, 404, 409):
            # 404 and 409 depend on state (an id that does not exist, capacity already sold).
            accepted += 1
        else:
            path = entry["request"]["url"].split("?")[0].replace(base, "")
            key = f"{entry['request']['method']} {path if '/v1/contracts/' not in path else '/v1/contracts/…'} {status}"
            refused[key] = refused.get(key, 0) + 1
    top = sorted(refused.items(), key=lambda kv: -kv[1])[:5]
    total = len(entries)
    return (f"{caller}: {total} schema-valid requests, {accepted} ({100 * accepted / max(total, 1):.0f}%) accepted "
            f"or refused for state (404/409); refused as invalid: {sum(refused.values())}, most: {top}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pcx", type=Path, default=ROOT / "target" / "debug" / "pcx")
    parser.add_argument("--max-examples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("psql") is None:
        raise SystemExit("psql is needed to create the fuzz database")
    # The seeded offer is posted without agents, hence no capacity check.
    server = Server(args.pcx, {**NO_RATE_LIMITS, "PCX_OFFER_CAPACITY_CHECK": "off", "PCX_ORACLE_HEARTBEAT_SECS": "5",
                                "PCX_LOG": "warn"}, "fuzz")
    failed = []
    try:
        accounts = seed(server.base)
        spec = requests.get(server.base + "/openapi.json", timeout=10).json()
        stream: dict = {}
        reader = threading.Thread(target=check_stream, args=(server.base, spec, 20.0, stream))
        reader.start()
        callers = (("anonymous", None), ("buyer", accounts["buyer"]["token"]), ("prover", accounts["prover"]["token"]))
        for caller, token in callers:
            if fuzz(server.base, caller, token, args) != 0:
                failed.append(f"schemathesis as {caller}")
        with tempfile.TemporaryDirectory() as report_dir:
            figures = [acceptance(server.base, caller, token, args, Path(report_dir))
                       for caller, token in callers if token]
        reader.join()
        print("\n===== schema-valid requests the server refuses =====\n" + "\n".join(figures))
        print(f"\n===== SSE stream: events {stream.get('seen')}; errors {stream.get('errors')} =====")
        if stream.get("errors"):
            failed.append("SSE stream events")
        if server.panics():
            failed.append(f"panics in the server log: {server.panics()[:3]}")
        if requests.get(server.base + "/health", timeout=10).status_code != 200:
            failed.append("the server is not healthy after the runs")
    finally:
        server.stop()
    if failed:
        print("\nFAILED: " + "; ".join(failed))
        return 1
    print("\nfuzz: no server error, every answer as the document declares it, stream events valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())

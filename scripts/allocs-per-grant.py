#!/usr/bin/env python3
"""Heap allocations (valgrind's DHAT) and instructions (cachegrind) per
client-credentials grant in a real `latchkey serve` (docs/BENCHMARKS.md, "Allocations
and instructions on the token path"). Both are counts, not times: they do not move with
the load of a shared machine, so two builds compare to the allocation and to within a
fraction of a percent of instructions.

For each binary given, starts `valgrind --tool=dhat BINARY serve` on a fresh SQLite data
directory on loopback, creates a tenant and a client_credentials token through the
management API, sends WARMUP grants and then GRANTS more over one kept-alive
connection, and stops the server. It runs this twice, with GRANTS and with none, so
that start-up, setup and warm-up cancel out: the difference of DHAT's total block
counts divided by GRANTS is what one grant allocates, its audit event included; the
same again under cachegrind gives the instructions one grant executes, the server's
threads together. Prints one line per binary, and exits 1 if a run fails.

Usage: scripts/allocs-per-grant.py [--grants N] [--warmup N] NAME=BINARY ...
Needs valgrind (Debian: apt-get install valgrind). Slow: valgrind runs the server
about fifty times slower.
"""

import argparse
import base64
import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{path} did not appear within {timeout} s")


def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    reply = conn.getresponse()
    data = reply.read()
    return reply.status, data


def run(binary, grants, warmup, workdir, tool):
    data_dir = workdir / "data"
    data_dir.mkdir()
    root_file = workdir / "root.key"
    out_file = workdir / "profile.out"
    port = free_port()
    output = "--dhat-out-file" if tool == "dhat" else "--cachegrind-out-file"
    server = subprocess.Popen(
        [
            "valgrind", f"--tool={tool}", f"{output}={out_file}", "--quiet",
            binary, "serve", "--listen", f"127.0.0.1:{port}",
            "--data-dir", str(data_dir), "--root-key-file", str(root_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(root_file, 300)
        root = root_file.read_text().strip()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        admin = {"Authorization": f"Bearer {root}", "Content-Type": "application/json"}
        status, _ = call(conn, "POST", "/v1/tenants", json.dumps({"id": "acme"}), admin)
        if status != 201:
            raise RuntimeError(f"creating the tenant answered {status}")
        body = json.dumps({"name": "ci", "kind": "client_credentials"})
        status, data = call(conn, "POST", "/v1/tenants/acme/tokens", body, admin)
        if status != 201:
            raise RuntimeError(f"creating the token answered {status}")
        created = json.loads(data)
        basic = base64.b64encode(
            f"{created['client_id']}:{created['client_secret']}".encode()
        ).decode()
        grant = {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        for _ in range(warmup + grants):
            status, _ = call(conn, "POST", "/oauth/token", "grant_type=client_credentials", grant)
            if status != 200:
                raise RuntimeError(f"a grant answered {status}")
        conn.close()
        # Let the audit writer commit what the grants queued.
        time.sleep(2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=300)
    if tool == "dhat":
        profile = json.loads(out_file.read_text())
        return sum(pp["tbk"] for pp in profile["pps"]), sum(pp["tb"] for pp in profile["pps"])
    for line in out_file.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1]), 0
    raise RuntimeError("cachegrind wrote no summary")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("binaries", nargs="+", metavar="NAME=BINARY")
    args = parser.parse_args()
    print(f"{'binary':<12} {'allocations/grant':>18} {'bytes/grant':>12} "
          f"{'instructions/grant':>19}  ({args.grants} grants, {args.warmup} warm-up, "
          f"{os.cpu_count()} cores)")
    failed = False
    for spec in args.binaries:
        name, _, binary = spec.partition("=")
        try:
            per_grant = []
            for tool in ("dhat", "cachegrind"):
                counts = []
                for grants in (args.grants, 0):
                    with tempfile.TemporaryDirectory() as tmp:
                        counts.append(run(binary, grants, args.warmup, pathlib.Path(tmp), tool))
                (first_n, second_n), (first_0, second_0) = counts
                per_grant += [(first_n - first_0) / args.grants, (second_n - second_0) / args.grants]
            blocks, size, instructions, _ = per_grant
            print(f"{name:<12} {blocks:>18.1f} {size:>12.0f} {instructions:>19.0f}")
        except Exception as error:  # a failed run names its binary and goes on
            failed = True
            print(f"{name:<12} failed: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers for the benchmarks under tests/bench/ (not a test suite)."""
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
FIRSTLOOKD = os.path.join(TARGET, "release", "firstlookd")
PHANTOM = os.path.join(TARGET, "release", "firstlook-phantom")
# pynetdicom installs scripts with the same names as DCMTK's: use DCMTK's by path.
STORESCU = "/usr/bin/storescu"
STORESCP = "/usr/bin/storescp"
QUICK = os.environ.get("QUICK") == "1"
ENV = dict(os.environ, TCP_NODELAY="1")


def build():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "firstlook", "-p", "firstlook-phantom"],
                   cwd=ROOT, check=True)
    for tool in (STORESCU, STORESCP):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} missing: run scripts/install-test-deps")


def workdir(name):
    # Under target/ so that storescp and firstlookd write to the same disk.
    base = os.path.join(TARGET, "bench")
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=name + "-", dir=base)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on {port}")


def phantom_ct(out, seed, count):
    subprocess.run([PHANTOM, "--kind", "ct", "--seed", str(seed), "--count", str(count), "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    return sorted(os.path.join(out, f) for f in os.listdir(out))


def start_storescp(outdir, port, aet="PACS"):
    os.makedirs(outdir, exist_ok=True)
    p = subprocess.Popen([STORESCP, "--aetitle", aet, "--output-directory", outdir, str(port)],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p


def write_config(path, port, spool, destinations=()):
    lines = [
        "[node]", 'ae_title = "FIRSTLOOK"', f'listen = "127.0.0.1:{port}"', f'spool_dir = "{spool}"',
        "[forward]", "retry_initial_secs = 1", "retry_max_secs = 2",
        "[[scanners]]", 'ae_title = "*"', 'hosts = ["127.0.0.1"]',
    ]
    for name, aet, addr in destinations:
        lines += ["[[destinations]]", f'name = "{name}"', f'ae_title = "{aet}"', f'address = "{addr}"']
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Daemon:
    def __init__(self, work, destinations=()):
        self.port = free_port()
        self.spool = os.path.join(work, "spool")
        cfg = os.path.join(work, "firstlookd.toml")
        write_config(cfg, self.port, self.spool, destinations)
        self.log = open(os.path.join(work, "firstlookd.log"), "w")
        self.proc = subprocess.Popen([FIRSTLOOKD, "--config", cfg, "run"], env=dict(ENV, FIRSTLOOK_LOG="warn"),
                                     stdout=self.log, stderr=self.log)
        wait_port(self.port)

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def delivered(self):
        db = os.path.join(self.spool, "index.sqlite")
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                return con.execute("SELECT count(*) FROM deliveries WHERE state='delivered'").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def storescu(port, files, aet="FIRSTLOOK"):
    """One association sending all files; returns elapsed seconds."""
    t0 = time.perf_counter()
    subprocess.run([STORESCU, "-aec", aet, "127.0.0.1", str(port)] + files, env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def parallel_storescu(port, file_sets, aet="FIRSTLOOK"):
    t0 = time.perf_counter()
    procs = [subprocess.Popen([STORESCU, "-aec", aet, "127.0.0.1", str(port)] + files, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for files in file_sets]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("storescu failed")
    return time.perf_counter() - t0


def median(xs):
    return statistics.median(xs)


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)

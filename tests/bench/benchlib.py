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


def ort_dylib():
    """The ONNX Runtime library of the PyPI wheel (the `ort` backend loads it)."""
    import glob
    import onnxruntime
    return sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[0]


def write_config(path, port, spool, destinations=(), triage=None, panel_port=None):
    """`triage`: None turns triage off (the spine alone); else a dict of [triage] keys.
    `panel_port`: None turns the panel off."""
    lines = [
        "[node]", 'ae_title = "FIRSTLOOK"', f'listen = "127.0.0.1:{port}"', f'spool_dir = "{spool}"',
        "[forward]", "retry_initial_secs = 1", "retry_max_secs = 2",
        # The VM's disk is shared and often past the default 90 % watermark.
        "[spool]", "high_watermark_percent = 98", "low_watermark_percent = 95",
        "[triage]",
    ]
    if triage is None:
        lines.append("enabled = false")
    else:
        lines += [f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}"
                  for k, v in triage.items()]
    lines += ["[panel]", f'listen = "127.0.0.1:{panel_port}"' if panel_port else "enabled = false"]
    lines += ["[[scanners]]", 'ae_title = "*"', 'hosts = ["127.0.0.1"]']
    for name, aet, addr in destinations:
        lines += ["[[destinations]]", f'name = "{name}"', f'ae_title = "{aet}"', f'address = "{addr}"']
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Daemon:
    def __init__(self, work, destinations=(), triage=None, env=None, panel_port=None):
        self.port = free_port()
        self.spool = os.path.join(work, "spool")
        self.config = cfg = os.path.join(work, "firstlookd.toml")
        write_config(cfg, self.port, self.spool, destinations, triage, panel_port)
        self.log = open(os.path.join(work, "firstlookd.log"), "w")
        self.proc = subprocess.Popen([FIRSTLOOKD, "--config", cfg, "run"],
                                     env={**ENV, "FIRSTLOOK_LOG": "warn", **(env or {})},
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


def trimmed_mean(xs, cut=0.1):
    """The mean of the values between the `cut` and 1 - `cut` quantiles:
    robust like a median, but not stuck to whole units when the values are
    stamps in whole milliseconds (their rounding averages out)."""
    xs = sorted(xs)
    k = int(len(xs) * cut)
    kept = xs[k:len(xs) - k] or xs
    return sum(kept) / len(kept)


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)


def phantom_cr(out, seed, count):
    subprocess.run([PHANTOM, "--kind", "cr", "--seed", str(seed), "--count", str(count), "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    return sorted(os.path.join(out, f) for f in os.listdir(out))


def distinct_copies(sources, n, out):
    """`n` files cycling through `sources`, each with its own SOP Instance UID
    (the same length, so a byte-for-byte substitution keeps the file valid).
    The spool would keep a byte-identical re-send only once."""
    import pydicom
    os.makedirs(out, exist_ok=True)
    paths = []
    for k in range(n):
        src = sources[k % len(sources)]
        uid = pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
        new = uid[:-6] + f"{k:06d}"
        data = open(src, "rb").read().replace(uid.encode(), new.encode())
        path = os.path.join(out, f"{k:05d}.dcm")
        open(path, "wb").write(data)
        paths.append(path)
    return paths


def bench_radiographs(n):
    """`n` distinct 2048 x 2500 16-bit CR/DX phantom files (cached sources),
    in a folder the caller removes with `cleanup(os.path.dirname(files[0]))`."""
    cache = os.path.join(TARGET, "bench", "cr-cache")
    if not os.path.isdir(cache) or len(os.listdir(cache)) < 20:
        cleanup(cache)
        phantom_cr(cache, 4242, 20)
    sources = sorted(os.path.join(cache, f) for f in os.listdir(cache))
    return distinct_copies(sources, n, workdir("cr-copies"))


def triage_run(files, interval, engine="auto", env=None, on_ready=None):
    """Sends `files` (radiographs) one C-STORE each, one every `interval`
    seconds of the clock (at whole multiples of `interval` of Unix time;
    storescu per file, not waiting; `on_ready()` is called once the daemon
    listens, before the first), to a firstlookd with triage on
    `engine`; returns ({"start": C-STORE start -> decision ms, "commit":
    commit of the instance -> decision ms, "to_worker": commit -> a worker
    starts on it, "after_worker": worker done -> decision made (stamped before its index write),
    "beyond_preprocess": commit -> decision less the image's own decode and preprocess times, "results":
    decision -> SR and heatmap in the spool ms} per image, per-step timings of the worker, the
    engine the daemon reported)."""
    work = workdir("triage")
    d = Daemon(work, triage={"engine": engine}, env=env)
    try:
        db = os.path.join(d.spool, "index.sqlite")
        procs = []
        if on_ready:
            on_ready()
        start = (time.time() // interval + 1) * interval
        for k, f in enumerate(files):
            delay = start + k * interval - time.time()
            if delay > 0:
                time.sleep(delay)
            procs.append(subprocess.Popen([STORESCU, "-aec", "FIRSTLOOK", "127.0.0.1", str(d.port), f], env=ENV,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("storescu failed")
        deadline = time.time() + 120
        while True:
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
                try:
                    units = con.execute("SELECT count(DISTINCT unit) FROM decisions").fetchone()[0]
                    written = con.execute("SELECT count(*) FROM results").fetchone()[0]
                    if units >= len(files) and written >= units:
                        rows = con.execute(
                            "SELECT min(d.decided_at) - max(d.received_last_at), min(d.decided_at) - max(i.committed_at)"
                            " FROM decisions d JOIN instances i ON d.unit = 'instance ' || i.sop_instance_uid"
                            " GROUP BY d.unit").fetchall()
                        steps = con.execute(
                            "SELECT min(json_extract(d.record, '$.inference_started_ms')) - max(i.committed_at),"
                            " min(d.decided_at) - max(json_extract(d.record, '$.inference_ended_ms'))"
                            " FROM decisions d JOIN instances i ON d.unit = 'instance ' || i.sop_instance_uid"
                            " GROUP BY d.unit").fetchall()
                        beyond = con.execute(
                            "SELECT min(d.decided_at) - max(i.committed_at) - json_extract(t.result, '$.timing.decode_ms')"
                            " - json_extract(t.result, '$.timing.preprocess_ms')"
                            " FROM decisions d JOIN instances i ON d.unit = 'instance ' || i.sop_instance_uid"
                            " JOIN triage_results t ON t.instance_id = i.id WHERE t.outcome = 'scored'"
                            " GROUP BY d.unit").fetchall()
                        lat = {"start": [r[0] for r in rows], "commit": [r[1] for r in rows],
                               "beyond_preprocess": [r[0] for r in beyond],
                               "to_worker": [r[0] for r in steps], "after_worker": [r[1] for r in steps],
                               "results": [r[0] for r in con.execute(
                                   "SELECT written_at - decided_at FROM results WHERE state = 'written'")]}
                        timing = [dict(zip(("read", "decode", "preprocess", "inference"), r)) for r in con.execute(
                            "SELECT json_extract(result, '$.timing.read_ms'), json_extract(result, '$.timing.decode_ms'),"
                            " json_extract(result, '$.timing.preprocess_ms'), json_extract(result, '$.timing.inference_ms')"
                            " FROM triage_results WHERE outcome = 'scored'")]
                        engine_used = con.execute("SELECT engine FROM triage_model").fetchone()[0]
                        return lat, timing, engine_used
                finally:
                    con.close()
            except sqlite3.Error:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"triage did not decide on {len(files)} images within two minutes")
            time.sleep(0.2)
    finally:
        d.stop()
        cleanup(work)


def percentile(xs, p):
    xs = sorted(xs)
    pos = p / 100 * (len(xs) - 1)
    i = int(pos)
    j = min(i + 1, len(xs) - 1)
    return xs[i] + (xs[j] - xs[i]) * (pos - i)


class Browser:
    """Headless Debian chromium through tests/browser/driver.mjs (playwright-core)."""

    def __init__(self):
        import json
        self._json = json
        d = os.path.join(ROOT, "tests", "browser")
        if not os.path.isdir(os.path.join(d, "node_modules", "playwright-core")):
            sys.exit("playwright-core missing: run scripts/install-test-deps")
        self.proc = subprocess.Popen(["node", os.path.join(d, "driver.mjs")], cwd=d, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def cmd(self, **c):
        self.proc.stdin.write(self._json.dumps(c) + "\n")
        self.proc.stdin.flush()
        a = self._json.loads(self.proc.stdout.readline())
        if not a["ok"]:
            raise RuntimeError(f"browser: {c['cmd']}: {a['error']}")
        return a["value"]

    def close(self):
        try:
            self.cmd(cmd="quit")
        except Exception:  # noqa: BLE001 - it exits on quit
            pass
        self.proc.wait(10)


def storescu_response_ms(port, files, aet="FIRSTLOOK"):
    """One association; the wall-clock time (ms since the epoch, the
    browser's Date.now() clock) each C-STORE response arrived, read from
    storescu's -v log as it is written."""
    p = subprocess.Popen([STORESCU, "-v", "-aec", aet, "127.0.0.1", str(port)] + files, env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    times = []
    for line in p.stdout:
        if "Received Store Response (Success)" in line:
            times.append(time.time() * 1000.0)
    if p.wait() != 0 or len(times) != len(files):
        raise RuntimeError(f"storescu stored {len(times)} of {len(files)}")
    return times

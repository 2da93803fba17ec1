"""The systemd unit, its Jetson drop-in and the appliance's default configuration.

Run from the repository root, after `cargo build --release --bins`:

    python3 -m unittest discover -s tests/packaging

How the unit is checked without installing it: each check builds a throwaway
root directory holding the unit (and, for the Jetson checks, the drop-in) in
etc/systemd/system/, this machine's systemd targets and slices in
usr/lib/systemd/system/ (the unit depends on sysinit.target, basic.target, ...
through its default dependencies), and an executable at usr/bin/firstlookd
(a copy of the built firstlookd when it exists). `systemd-analyze verify
--root=` and `systemd-analyze security --offline=true --root=` then load the
unit from that root alone: nothing on this machine (another firstlookd.service,
global service.d drop-ins) can change the result, and the drop-in is only
applied where it is meant to be. (Given a unit as a file path instead,
systemd-analyze also reads the firstlookd.service.d/ beside it, so the main
unit could never be judged on its own.)

`verify` exits 0 even when it ignores a line it cannot parse (an unknown key,
a misspelt system call): anything it prints counts as a failure. It does not
look up User=, so the firstlook user need not exist on this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "daemon" / "systemd"
UNIT = SYSTEMD / "firstlookd.service"
DROPIN = SYSTEMD / "firstlookd.service.d" / "jetson-gpu.conf"
CONFIG = SYSTEMD / "firstlook.toml"
UNIT_NAME = "firstlookd.service"

# The bar for the unit.
MAIN_EXPOSURE_MAX = 2.0
# What ships on the appliance is the unit plus the Jetson drop-in, so the same
# bar holds for it: the drop-in may cost what GPU access needs (the host's
# /dev behind a closed device ACL, group video, no W^X; 0.3 to 0.4 on
# systemd 252's weights), not more.
JETSON_EXPOSURE_MAX = 2.0

LANDLOCK_CALLS = {"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"}
# The only settings the Jetson drop-in may touch: GPU access and what CUDA needs.
DROPIN_KEYS = {
    "PrivateDevices",
    "DevicePolicy",
    "DeviceAllow",
    "SupplementaryGroups",
    "MemoryDenyWriteExecute",
    "Environment",
}


def firstlookd_binary() -> Path:
    """The binary `cargo build --release --bins` leaves, as scripts/test builds it."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "firstlookd"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        raise AssertionError(
            "systemd-analyze is missing: install Debian's systemd package (scripts/install-test-deps does)"
        )
    return path


def run_analyze(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    return subprocess.run(
        [systemd_analyze(), "--no-pager", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file, each a list of (key, value) in file order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        if current is None or "=" not in line:
            raise AssertionError(f"{path}: cannot parse line {raw!r}")
        key, value = line.split("=", 1)
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def last(section: list[tuple[str, str]], key: str) -> str | None:
    found = values(section, key)
    return found[-1] if found else None


def words(section: list[tuple[str, str]], key: str) -> set[str]:
    """A list-valued setting (all its assignments; an empty one resets)."""
    result: set[str] = set()
    for v in values(section, key):
        if v == "":
            result = set()
        else:
            result |= set(v.split())
    return result


def seconds(span: str) -> float:
    """A systemd time span such as "30s", "1min 30s", "3min", "90"."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    if not parts or "".join(n + u for n, u in parts) != span.replace(" ", ""):
        raise AssertionError(f"cannot read time span {span!r}")
    for number, unit in parts:
        if unit not in units and unit != "":
            raise AssertionError(f"unknown unit in time span {span!r}")
        total += float(number) * units.get(unit, 1)
    return total


class Root:
    """A throwaway root holding the unit (and the drop-in) for systemd-analyze."""

    def __init__(self, with_dropin: bool):
        self.dir = Path(tempfile.mkdtemp(prefix="firstlookd-unit-"))
        units = self.dir / "etc" / "systemd" / "system"
        units.mkdir(parents=True)
        shutil.copy(UNIT, units / UNIT_NAME)
        if with_dropin:
            (units / f"{UNIT_NAME}.d").mkdir()
            shutil.copy(DROPIN, units / f"{UNIT_NAME}.d" / DROPIN.name)
        # This machine's targets and slices: what the unit's dependencies name.
        system = self.dir / "usr" / "lib" / "systemd" / "system"
        system.mkdir(parents=True)
        host = next(
            (p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()),
            None,
        )
        if host is None:
            raise AssertionError("this machine has no /usr/lib/systemd/system: install systemd")
        for unit in host.iterdir():
            if unit.suffix in (".target", ".slice") and unit.is_file():
                shutil.copy(unit, system / unit.name)
        # ExecStart= must name an executable inside the root.
        binary = self.dir / "usr" / "bin" / "firstlookd"
        binary.parent.mkdir(parents=True)
        built = firstlookd_binary()
        if built.is_file():
            shutil.copy(built, binary)
            self.binary = f"{built} (built)"
        else:
            binary.write_text("#!/bin/sh\nexit 1\n")
            self.binary = f"a stand-in script ({built} is not built)"
        binary.chmod(0o755)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def exposure(root: Root, label: str) -> float:
    """Runs `security --offline=true` in `root`, prints its table, returns the overall level."""
    done = run_analyze("security", "--offline=true", f"--root={root.dir}", UNIT_NAME)
    print(f"\n--- systemd-analyze security --offline=true: {label} ---", file=sys.stdout)
    print(done.stdout, file=sys.stdout)
    if done.stderr.strip():
        print(done.stderr, file=sys.stdout)
    sys.stdout.flush()
    if done.returncode != 0:
        raise AssertionError(f"systemd-analyze security failed ({done.returncode}):\n{done.stderr}")
    if done.stderr.strip():
        raise AssertionError(
            f"systemd-analyze security ignored part of the unit ({label}), so its score is not the unit's:\n{done.stderr}"
        )
    found = re.search(
        rf"Overall exposure level for {re.escape(UNIT_NAME)}: (\d+(?:\.\d+)?)", done.stdout
    )
    if found is None:
        raise AssertionError(f"no overall exposure level in:\n{done.stdout}")
    return float(found.group(1))


class SystemdAnalyze(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.main = Root(with_dropin=False)
        cls.jetson = Root(with_dropin=True)

    @classmethod
    def tearDownClass(cls):
        cls.main.close()
        cls.jetson.close()

    def verify(self, root: Root, label: str) -> None:
        done = run_analyze("verify", f"--root={root.dir}", UNIT_NAME)
        output = (done.stdout + done.stderr).strip()
        print(
            f"\n--- systemd-analyze verify: {label} (ExecStart= binary: {root.binary}) ---\n"
            f"exit {done.returncode}; output: {output or '(none)'}"
        )
        self.assertEqual(done.returncode, 0, f"verify failed ({label}):\n{output}")
        self.assertEqual(output, "", f"verify warned ({label}); a warning is a line systemd ignores:\n{output}")

    def test_verify_passes_on_the_unit(self):
        self.verify(self.main, "firstlookd.service")

    def test_verify_passes_with_the_jetson_dropin(self):
        self.verify(self.jetson, "firstlookd.service + jetson-gpu.conf")

    def test_the_unit_is_exposed_at_most_2_0(self):
        level = exposure(self.main, "firstlookd.service")
        print(f"overall exposure, firstlookd.service: {level}")
        self.assertLessEqual(level, MAIN_EXPOSURE_MAX)

    def test_the_jetson_dropin_keeps_the_exposure_bounded(self):
        main = exposure(self.main, "firstlookd.service (for comparison)")
        level = exposure(self.jetson, "firstlookd.service + jetson-gpu.conf")
        print(f"overall exposure, firstlookd.service: {main}; with jetson-gpu.conf: {level}")
        self.assertLessEqual(level, JETSON_EXPOSURE_MAX)
        # The drop-in loosens; if it scored lower it would not have been applied.
        self.assertGreater(level, main, "the drop-in did not change the score: was it read?")


class UnitProperties(unittest.TestCase):
    def setUp(self):
        self.unit = parse_unit(UNIT)
        self.service = self.unit.get("Service", [])
        self.assertTrue(self.service, f"{UNIT} has no [Service] section")

    def test_the_daemon_is_started_as_the_recipe_installs_it(self):
        self.assertEqual(
            last(self.service, "ExecStart"),
            "/usr/bin/firstlookd --config /etc/firstlook/firstlook.toml run",
        )

    def test_readiness_watchdog_and_restart(self):
        self.assertEqual(last(self.service, "Type"), "notify")
        self.assertEqual(last(self.service, "NotifyAccess"), "main")
        watchdog = last(self.service, "WatchdogSec")
        self.assertIsNotNone(watchdog, "WatchdogSec= is missing")
        self.assertTrue(0 < seconds(watchdog) <= 60, f"WatchdogSec={watchdog}")
        self.assertEqual(last(self.service, "Restart"), "on-failure")
        self.assertIsNotNone(last(self.service, "RestartSec"), "RestartSec= is missing")
        stop = last(self.service, "TimeoutStopSec")
        self.assertIsNotNone(stop, "TimeoutStopSec= is missing")
        self.assertTrue(30 <= seconds(stop) <= 120, f"TimeoutStopSec={stop}: graceful drain needs 30-60 s")

    def test_directories_and_user(self):
        self.assertIn("firstlook", words(self.service, "StateDirectory"))
        self.assertIn("firstlook", words(self.service, "ConfigurationDirectory"))
        self.assertEqual(last(self.service, "User"), "firstlook")
        self.assertEqual(last(self.service, "Group"), "firstlook")
        self.assertIn(last(self.service, "DynamicUser"), (None, "no", "false", "0"))

    def test_the_only_capability_is_binding_low_ports(self):
        self.assertEqual(words(self.service, "AmbientCapabilities"), {"CAP_NET_BIND_SERVICE"})
        self.assertEqual(words(self.service, "CapabilityBoundingSet"), {"CAP_NET_BIND_SERVICE"})

    def test_hardening(self):
        expected = {
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "NoNewPrivileges": "yes",
            "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes",
            "ProtectKernelLogs": "yes",
            "ProtectControlGroups": "yes",
            "MemoryDenyWriteExecute": "yes",
            "SystemCallArchitectures": "native",
        }
        for key, value in expected.items():
            with self.subTest(key=key):
                self.assertEqual(last(self.service, key), value)
        self.assertEqual(
            words(self.service, "RestrictAddressFamilies"), {"AF_UNIX", "AF_INET", "AF_INET6"}
        )
        allowed = [v for v in values(self.service, "SystemCallFilter") if not v.startswith("~")]
        self.assertIn("@system-service", " ".join(allowed).split())

    def test_landlock_is_not_filtered_out(self):
        allowed = set()
        for v in values(self.service, "SystemCallFilter"):
            if not v.startswith("~"):
                allowed |= set(v.split())
        denied = set()
        for v in values(self.service, "SystemCallFilter"):
            if v.startswith("~"):
                denied |= set(v[1:].split())
        # What this systemd's @system-service holds; 252's has no Landlock calls.
        groups = run_analyze("syscall-filter", "@system-service")
        self.assertEqual(groups.returncode, 0, groups.stderr)
        in_group = set(re.findall(r"^\s+([a-z0-9_]+)\s*$", groups.stdout, re.M))
        for call in sorted(LANDLOCK_CALLS):
            with self.subTest(call=call):
                self.assertTrue(
                    call in allowed or call in in_group,
                    f"{call} is not allowed: node.confine_writes would fail at start",
                )
                self.assertNotIn(call, denied)
                for group in denied:
                    if group.startswith("@"):
                        listed = run_analyze("syscall-filter", group)
                        self.assertNotRegex(listed.stdout, rf"(?m)^\s+{call}\s*$", f"{group} denies {call}")


class JetsonDropin(unittest.TestCase):
    def setUp(self):
        self.dropin = parse_unit(DROPIN)
        self.assertEqual(set(self.dropin), {"Service"}, "the drop-in changes [Service] only")
        self.service = self.dropin["Service"]

    def test_it_touches_only_gpu_access(self):
        self.assertLessEqual({k for k, _ in self.service}, DROPIN_KEYS)

    def test_the_device_acl_stays_closed(self):
        self.assertEqual(last(self.service, "PrivateDevices"), "no")
        self.assertEqual(last(self.service, "DevicePolicy"), "closed")
        self.assertIn("video", words(self.service, "SupplementaryGroups"))
        allowed = {}
        for v in values(self.service, "DeviceAllow"):
            node, _, access = v.partition(" ")
            allowed[node] = access
        for node in (
            "/dev/nvmap",
            "/dev/host1x-fence",
            "/dev/nvhost-ctrl-gpu",
            "/dev/nvhost-gpu",
            "/dev/nvhost-as-gpu",
            "/dev/nvgpu/igpu0/ctrl",
            "/dev/nvgpu/igpu0/channel",
            "/dev/nvgpu/igpu0/as",
        ):
            with self.subTest(node=node):
                self.assertIn(node, allowed)
        for node, access in allowed.items():
            with self.subTest(node=node):
                self.assertTrue(node.startswith("/dev/nv") or node == "/dev/host1x-fence", node)
                self.assertNotIn("m", access, f"{node}: no mknod")

    def test_the_daemons_own_landlock_rules_open_every_allowed_node(self):
        # daemon/src/sandbox.rs confines writes itself; a node the unit allows
        # but Landlock refuses would fail to open all the same.
        source = (REPO / "daemon" / "src" / "sandbox.rs").read_text()
        block = re.search(r"const DEVICES: &\[&str\] = &\[(.*?)\];", source, re.S)
        self.assertIsNotNone(block, "DEVICES not found in sandbox.rs")
        landlock = re.findall(r'"(/dev/[^"]+)"', block.group(1))
        for v in values(self.service, "DeviceAllow"):
            node = v.partition(" ")[0]
            with self.subTest(node=node):
                self.assertTrue(
                    any(node == d or node.startswith(d + "/") for d in landlock),
                    f"{node} is allowed by the drop-in but not in sandbox.rs DEVICES",
                )

    def test_the_cuda_cache_is_where_the_daemon_may_write(self):
        config = tomllib.loads(CONFIG.read_text())
        spool = Path(config["node"]["spool_dir"])
        env = dict(
            item.split("=", 1)
            for v in values(self.service, "Environment")
            for item in v.split()
        )
        cache = env.get("CUDA_CACHE_PATH")
        self.assertIsNotNone(cache)
        self.assertTrue(Path(cache).is_relative_to(spool), f"{cache} is outside the spool {spool} (Landlock)")


class DefaultConfiguration(unittest.TestCase):
    def test_the_spool_is_in_the_state_directory(self):
        config = tomllib.loads(CONFIG.read_text())
        state = words(parse_unit(UNIT)["Service"], "StateDirectory")
        spool = Path(config["node"]["spool_dir"])
        self.assertTrue(
            any(spool.is_relative_to(Path("/var/lib") / d) for d in state),
            f"spool_dir {spool} is not under StateDirectory= {state}: ProtectSystem=strict makes it read-only",
        )
        self.assertEqual(config["node"]["listen"], "0.0.0.0:104")
        self.assertEqual(config["node"]["ae_title"], "FIRSTLOOK")

    def test_check_config_accepts_it(self):
        binary = firstlookd_binary()
        self.assertTrue(
            binary.is_file(),
            f"{binary} is missing: run `cargo build --release --bins` first (the README's test command does)",
        )
        done = subprocess.run(
            [str(binary), "check-config", str(CONFIG)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        print(f"\n--- firstlookd check-config {CONFIG.relative_to(REPO)} ---\n{done.stdout}{done.stderr}")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn(": OK (", done.stdout)


if __name__ == "__main__":
    unittest.main()

"""The Yocto layer (yocto/meta-firstlook) and its kas files.

Run from the repository root: python3 -m unittest discover -s tests/packaging
Standard library only; oelint-adv (PyPI, pinned by scripts/install-test-deps)
must be on PATH.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYER = os.path.join(ROOT, "yocto", "meta-firstlook")
KAS = os.path.join(ROOT, "yocto", "kas")
SCRIPT = os.path.join(ROOT, "scripts", "yocto-crates")
INC = os.path.join(LAYER, "recipes-firstlook", "firstlook", "firstlook-crates.inc")
RELEASE = "wrynose"
REQUIRED_CLASSES = {"cargo", "cargo-update-recipe-crates", "systemd", "useradd"}
LINTED_SUFFIXES = (".bb", ".bbappend", ".inc", ".bbclass", ".conf")


def read(path, mode="r"):
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
        return f.read()


def layer_files(suffixes):
    out = []
    for d, dirs, files in os.walk(LAYER):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(suffixes)]
    return out


def recipes():
    return [f for f in layer_files((".bb",))]


def logical_lines(path):
    """A BitBake file's lines with backslash continuations joined."""
    return read(path).replace("\\\n", " ").splitlines()


def assignments(path, var):
    """Values assigned to VAR (any operator, no override) in a BitBake file."""
    pat = re.compile(r'^\s*' + re.escape(var) + r'\s*(?:\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*"(.*)"\s*$')
    return [m.group(1) for m in (pat.match(l) for l in logical_lines(path)) if m]


def run_script(*args):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


class CratesInc(unittest.TestCase):
    def test_committed_inc_agrees_with_cargo_lock(self):
        r = run_script("--check")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("agrees with", r.stdout)

    def test_inc_covers_every_crates_io_package_of_the_lock(self):
        lock = read(os.path.join(ROOT, "Cargo.lock"))
        want = set()
        for block in lock.split("[[package]]")[1:]:
            fields = dict(re.findall(r'^(name|version|source|checksum) = "([^"]*)"', block, re.M))
            if fields.get("source", "").startswith(("registry+", "sparse+")):
                want.add((fields["name"], fields["version"], fields["checksum"]))
        text = read(INC)
        uris = set(re.findall(r"crate://crates\.io/([^/\s]+)/(\S+) \\", text))
        sums = dict(re.findall(r'^SRC_URI\[(\S+)\.sha256sum\] = "([0-9a-f]{64})"$', text, re.M))
        self.assertTrue(want, "no registry package found in Cargo.lock")
        self.assertEqual(uris, {(n, v) for n, v, _ in want})
        self.assertEqual(sums, {f"{n}-{v}": c for n, v, c in want})

    def test_check_fails_on_an_altered_copy(self):
        with open(INC, encoding="utf-8") as f:
            good = f.read()
        m = re.search(r'^SRC_URI\[(\S+)\.sha256sum\] = "([0-9a-f]{64})"$', good, re.M)
        self.assertIsNotNone(m)
        flipped = ("0" if m.group(2)[0] != "0" else "1") + m.group(2)[1:]
        first_crate = re.search(r"^    crate://\S+ \\\n", good, re.M).group(0)
        cases = {
            "checksum": (good.replace(m.group(2), flipped, 1), f"checksum differs for {m.group(1)}"),
            "dropped crate": (good.replace(first_crate, "", 1), "missing crate:"),
            "extra crate": (
                good.replace(first_crate, first_crate + "    crate://crates.io/not-in-lock/9.9.9 \\\n", 1),
                "extra crate: not-in-lock-9.9.9",
            ),
        }
        with tempfile.TemporaryDirectory() as tmp:
            for what, (text, expect) in cases.items():
                with self.subTest(what):
                    path = os.path.join(tmp, "firstlook-crates.inc")
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(text)
                    r = run_script("--check", "--output", path)
                    self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                    self.assertIn(expect, r.stderr)

    def test_generation_is_deterministic_and_rejects_git_sources(self):
        with tempfile.TemporaryDirectory() as tmp:
            a, b = os.path.join(tmp, "a.inc"), os.path.join(tmp, "b.inc")
            for out in (a, b):
                r = run_script("--output", out)
                self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(read(a, "rb"), read(b, "rb"))
            self.assertEqual(read(a, "rb"), read(INC, "rb"))

            lock = os.path.join(tmp, "Cargo.lock")
            shutil.copy(os.path.join(ROOT, "Cargo.lock"), lock)
            with open(lock, "a", encoding="utf-8") as f:
                f.write(
                    '\n[[package]]\nname = "from-git"\nversion = "0.1.0"\n'
                    'source = "git+https://example.invalid/from-git?rev=abc#abc"\n'
                )
            r = run_script("--lock", lock, "--output", os.path.join(tmp, "c.inc"))
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("from-git 0.1.0 comes from git", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "c.inc")))


class Oelint(unittest.TestCase):
    def test_no_errors_in_any_recipe(self):
        exe = shutil.which("oelint-adv")
        if exe is None:
            self.fail("oelint-adv is not on PATH (scripts/install-test-deps installs it)")
        files = layer_files(LINTED_SUFFIXES)
        self.assertTrue(any(f.endswith(".bb") for f in files))
        env = dict(os.environ, OELINT_CONFIG=os.path.join(LAYER, ".oelint.cfg"))
        r = subprocess.run(
            [exe, "--quiet", "--mode", "all", "--release", RELEASE, "--exit-zero", *files],
            cwd=LAYER, capture_output=True, text=True, env=env, timeout=600,
        )
        out = (r.stdout + r.stderr).splitlines()
        findings = [l for l in out if re.match(r"^\S+:\d+:(error|warning|info):", l)]
        other = [l for l in out if l.strip() and l not in findings]
        self.assertEqual(r.returncode, 0, "\n".join(out))
        self.assertEqual(other, [], "oelint-adv said something that is not a finding")
        errors = [l for l in findings if ":error:" in l]
        warnings = [l for l in findings if ":warning:" in l]
        for w in warnings:
            print(f"\noelint-adv warning: {os.path.relpath(w, ROOT) if w.startswith('/') else w}",
                  file=sys.stderr, end="")
        self.assertEqual(errors, [], "oelint-adv errors:\n" + "\n".join(errors))

    def test_oelint_does_find_errors(self):
        """The invocation above reports errors when there are some."""
        exe = shutil.which("oelint-adv")
        if exe is None:
            self.fail("oelint-adv is not on PATH")
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "broken_1.0.bb")
            with open(bad, "w") as f:
                f.write('SRC_URI = "http://example.invalid/x.tar.gz"\ninherit cargo\nDEPENDS += " foo"\n')
            env = dict(os.environ, OELINT_CONFIG=os.path.join(LAYER, ".oelint.cfg"))
            r = subprocess.run(
                [exe, "--quiet", "--mode", "all", "--release", RELEASE, "--exit-zero", bad],
                cwd=LAYER, capture_output=True, text=True, env=env, timeout=300,
            )
            self.assertRegex(r.stdout + r.stderr, r":error:oelint\.var\.mandatoryvar\.LICENSE")


class LayerConf(unittest.TestCase):
    def test_layerseries_compat_names_the_release(self):
        conf = os.path.join(LAYER, "conf", "layer.conf")
        compat = assignments(conf, "LAYERSERIES_COMPAT_firstlook")
        self.assertEqual(len(compat), 1, compat)
        self.assertIn(RELEASE, compat[0].split())
        self.assertIn("firstlook", " ".join(assignments(conf, "BBFILE_COLLECTIONS")).split())
        self.assertIn("core", " ".join(assignments(conf, "LAYERDEPENDS_firstlook")).split())


class Recipes(unittest.TestCase):
    def test_recipes_exist(self):
        names = sorted(os.path.basename(r) for r in recipes())
        self.assertIn("firstlook_git.bb", names)
        self.assertIn("firstlook-image.bb", names)

    def test_every_cargo_recipe_inherits_the_required_classes(self):
        found = 0
        for r in recipes():
            inherited = set()
            for l in logical_lines(r):
                m = re.match(r"^\s*inherit\s+(.*)$", l)
                if m:
                    inherited.update(m.group(1).split())
            if "core-image" in inherited or "image" in inherited:
                continue  # an image recipe: nothing to build with cargo
            found += 1
            with self.subTest(recipe=os.path.relpath(r, ROOT)):
                self.assertLessEqual(REQUIRED_CLASSES, inherited)
                self.assertTrue(assignments(r, "SYSTEMD_SERVICE:${PN}"))
                self.assertTrue(assignments(r, "USERADD_PARAM:${PN}"))
                self.assertTrue(any("require ${BPN}-crates.inc" in l for l in logical_lines(r)))
        self.assertGreaterEqual(found, 1)

    def test_recipe_installs_the_single_sources_from_the_tree(self):
        r = os.path.join(LAYER, "recipes-firstlook", "firstlook", "firstlook_git.bb")
        text = read(r)
        for src, dest in [
            ("${S}/daemon/systemd/firstlookd.service", "${D}${systemd_system_unitdir}/"),
            ("${S}/daemon/systemd/firstlookd.service.d/jetson-gpu.conf",
             "${D}${systemd_system_unitdir}/firstlookd.service.d/"),
            ("${S}/daemon/systemd/firstlook.toml", "${D}${sysconfdir}/firstlook/"),
        ]:
            self.assertRegex(text, re.escape(src) + r"\s*\\?\s*" + re.escape(dest))
        self.assertIn("${sysconfdir}/firstlook/firstlook.toml", assignments(r, "CONFFILES:${PN}")[0])
        # The drop-in only where the GPU build is.
        self.assertRegex(text, r"contains\('PACKAGECONFIG', 'tensorrt'[^\n]*\n\s*install -d \$\{D\}\$\{systemd_system_unitdir\}/firstlookd\.service\.d")

    def test_recipe_version_and_licence_match_the_workspace(self):
        r = os.path.join(LAYER, "recipes-firstlook", "firstlook", "firstlook_git.bb")
        cargo = read(os.path.join(ROOT, "Cargo.toml"))
        ws = cargo[cargo.index("[workspace.package]"):]
        version = re.search(r'^version = "([^"]+)"', ws, re.M).group(1)
        self.assertEqual(assignments(r, "PV"), [f"{version}+git"])
        lic = re.search(r'^license = "([^"]+)"', ws, re.M).group(1)
        self.assertEqual(assignments(r, "LICENSE"), [lic])
        chk = assignments(r, "LIC_FILES_CHKSUM")
        self.assertEqual(len(chk), 1)
        for m in re.finditer(r"file://([^;\s]+)((?:;[a-z0-9]+=[^;\s]+)*)", chk[0]):
            params = dict(p.split("=", 1) for p in m.group(2).split(";") if p)
            with open(os.path.join(ROOT, m.group(1)), "rb") as f:
                lines = f.readlines()
            begin, end = int(params.get("beginline", 1)), int(params.get("endline", len(lines)))
            digest = hashlib.md5(b"".join(lines[begin - 1:end])).hexdigest()
            self.assertEqual(digest, params["md5"], f"LIC_FILES_CHKSUM of {m.group(1)}")

    def test_workspace_rust_version_is_within_the_release(self):
        """wrynose's Rust (1.94.1) is at least what the workspace declares."""
        cargo = read(os.path.join(ROOT, "Cargo.toml"))
        msrv = re.search(r'^rust-version = "([0-9.]+)"', cargo, re.M).group(1)
        self.assertLessEqual(tuple(map(int, msrv.split("."))), (1, 94, 1))


class KasFiles(unittest.TestCase):
    def kas_files(self):
        files = sorted(os.path.join(KAS, f) for f in os.listdir(KAS) if f.endswith((".yml", ".yaml")))
        self.assertTrue(files)
        return files

    @staticmethod
    def repos(path):
        """{name: {key: value}} of the top-level `repos:` block (a YAML subset)."""
        out, name, in_repos = {}, None, False
        for line in read(path).splitlines(True):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if re.match(r"^\S", line):
                in_repos = line.startswith("repos:")
                continue
            if not in_repos:
                continue
            m = re.match(r"^  ([A-Za-z0-9_.-]+):\s*$", line)
            if m:
                name = m.group(1)
                out[name] = {}
                continue
            m = re.match(r"^    ([a-z_]+):\s*(.*?)\s*$", line)
            if m and name:
                out[name][m.group(1)] = m.group(2).strip('"\'')
            m = re.match(r"^      ([^\s:]+):", line)
            if m and name:
                out[name].setdefault("layer_list", []).append(m.group(1))
        return out

    def test_every_remote_repo_is_pinned_to_a_commit(self):
        seen = 0
        for path in self.kas_files():
            for name, repo in self.repos(path).items():
                if "url" not in repo:
                    continue
                seen += 1
                with self.subTest(file=os.path.basename(path), repo=name):
                    self.assertRegex(repo.get("commit", ""), r"^[0-9a-f]{40}$")
                    self.assertTrue(repo.get("branch"), "name the branch the commit is on")
        self.assertGreaterEqual(seen, 5)

    def test_kas_files_use_this_layer_and_the_jetson_bsp(self):
        all_repos = {}
        for path in self.kas_files():
            all_repos.update(self.repos(path))
        ours = [r for r in all_repos.values() if "url" not in r]
        self.assertEqual(len(ours), 1, "this repository, without url")
        self.assertIn("yocto/meta-firstlook", ours[0].get("layer_list", []))
        urls = " ".join(r.get("url", "") for r in all_repos.values())
        for needed in ("openembedded-core", "bitbake", "meta-yocto", "meta-openembedded", "meta-tegra"):
            self.assertIn(needed, urls)
        for r in all_repos.values():
            if "url" in r and "bitbake" not in r["url"]:
                self.assertIn(r.get("branch"), (RELEASE,), r["url"])
        jetson = read(os.path.join(KAS, "jetson-orin-nano-devkit.yml"))
        self.assertRegex(jetson, r"(?m)^machine: jetson-orin-nano-devkit$")
        self.assertRegex(jetson, r"(?m)^    - yocto/kas/firstlook\.yml$")
        base = read(os.path.join(KAS, "firstlook.yml"))
        self.assertRegex(base, r"(?m)^distro: poky$")
        self.assertRegex(base, r"(?m)^target: firstlook-image$")


if __name__ == "__main__":
    unittest.main()

"""The gbuild pipeline (SPEC §3), written against :class:`~gitian.targets.base.Target` only.

One :class:`Builder` runs one descriptor: it checks everything it can before
starting anything, records the inputs, then for each suite and architecture
makes a clean target, installs packages, runs the descriptor's script and
copies the results out; last it hashes the outputs and writes
``result/<name>-res.yml``.

Failure and interruption (Ctrl-C, SIGTERM) are handled the same way: every
target this run started is stopped (with further signals held off while it
stops), temporary directories are removed, and neither a result file nor a
half-written cache is left: caches are copied back into a directory beside
the old one and swapped in, and the result file is written last, atomically.
The previous ``result/`` file, the caches and ``sigs/`` stay as they were.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gitian import buildscript, hashing, inputs, log
from gitian.descriptor import Descriptor
from gitian.errors import BuildError, CommandError, TargetError
from gitian.home import Home, target_bin
from gitian.manifest import Report, dump_result, in_manifest_text
from gitian.run import remove_tree, signals_held, write_atomic
from gitian.targets.base import Target

TargetFactory = Callable[[str, str], Target]
"""Makes the target for one configuration: ``(suite, arch) -> Target``."""

ARCHIVES = "/var/cache/apt/archives"
UPGRADE_MARKER = "/var/cache/gitian/initial-upgrade"
#: where gbuild puts target-bin/canon-zip: the build user's PATH in every target
CANON_ZIP = "/usr/local/bin/canon-zip"
DEB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~_%:\-]*\.deb")
LOG_TAIL = 20
#: installed packages and their .deb file names, as target-bin/grab-packages.sh asks dpkg
DPKG_FORMAT = (
    "${db:Status-Abbrev} ${binary:Package}=${Version} ${Package}_${Version}_${Architecture}.deb\n"
)


@dataclass(frozen=True)
class BuildOptions:
    """gbuild's options, parsed at the edge."""

    allow_sudo: bool = False
    skip_image: bool = False
    upgrade: bool = False
    quiet: bool = False
    num_procs: int = 2
    memory_mib: int = 2000
    cache_read_only: bool = False
    skip_fetch: bool = False
    fetch_branches: bool = False
    fetch_tags: bool = False
    skip_cleanup: bool = False
    ci: bool = False  # the CI variable was set: the build log goes to the terminal too


@dataclass
class BuildResult:
    report: Report
    result_file: Path
    result_sha256: str
    #: (step title, seconds, spent installing packages or in the user's script?)
    timings: list[tuple[str, float, bool]] = field(default_factory=list)


class Builder:
    """Runs one descriptor through the whole flow.  ``out`` receives what the
    classic tool printed on stdout (the out lines and the result's sha256)."""

    def __init__(
        self,
        desc: Descriptor,
        home: Home,
        options: BuildOptions,
        make_target: TargetFactory,
        *,
        out: IO[str] | None = None,
    ) -> None:
        self.desc = desc
        self.home = home
        self.opts = options
        self.make_target = make_target
        # .debs the current target held before the install steps (see _push_debs)
        self._debs_before: set[str] = set()
        self.out = out if out is not None else sys.stdout
        self.timings: list[tuple[str, float, bool]] = []
        self._live: Target | None = None
        # the remotes after checkout, for the repositories handed to each target
        self._checked: list[inputs.CheckedOut] = []

    # -- helpers ------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, title: str, *, external: bool = False) -> Iterator[None]:
        """A timed progress step.  ``external``: its time is package
        installation or the user's script, not gbuild's own overhead."""
        start = time.monotonic()
        try:
            with log.step(title):
                try:
                    yield
                except OSError as e:  # disk full, permissions: one clear line, not a traceback
                    where = f" ({e.filename})" if e.filename else ""
                    raise BuildError(
                        f"{title}: {e.strerror or e}{where}",
                        hint="nothing was written to result/; caches and sigs/ are unchanged",
                    ) from e
        finally:
            self.timings.append((title, time.monotonic() - start, external))

    def _print(self, text: str) -> None:
        if not self.opts.quiet and text:
            self.out.write(text)
            self.out.flush()

    @property
    def install_log(self) -> Path:
        return self.home.var / "install.log"

    @property
    def build_log(self) -> Path:
        return self.home.var / "build.log"

    # -- the flow -----------------------------------------------------------
    def check(self) -> None:
        """Everything that can be checked before anything starts (SPEC §3.1)."""
        inputs.check_remotes(self.home, self.desc.remotes)
        inputs.check_files(self.home, self.desc.files)
        for script in ("init-build.sh", "grab-packages.sh", "upgrade-system.sh", "canon-zip"):
            if not (target_bin() / script).is_file():
                raise BuildError(f"target-bin/{script} is missing from this installation")

    def run(self) -> BuildResult:
        d = self.desc
        self.check()
        h = self.home
        if h.build.is_symlink() or h.build.is_file():
            h.build.unlink()
        elif h.build.exists():
            remove_tree(h.build)  # any depth: shutil.rmtree recurses
        h.build.mkdir(parents=True)
        h.result.mkdir(parents=True, exist_ok=True)
        h.var.mkdir(parents=True, exist_ok=True)
        if d.enable_cache:
            (h.cache / "common").mkdir(parents=True, exist_ok=True)
            (h.cache / d.name).mkdir(parents=True, exist_ok=True)

        with self.step("Hashing input files"):
            file_lines = inputs.file_lines(h, d.files)
        checked = self._checked = []
        fetch = inputs.FetchOptions(
            skip_fetch=self.opts.skip_fetch,
            fetch_branches=self.opts.fetch_branches,
            fetch_tags=self.opts.fetch_tags,
            quiet=self.opts.quiet,
        )
        for r in d.remotes:
            verb = "Checking out" if self.opts.skip_fetch else "Fetching"
            with self.step(f"{verb} {r.dir} at {r.commit}"):
                checked.append(inputs.checkout(h, r, fetch))
        in_manifest = in_manifest_text(
            d.sha256, d.name, file_lines, [(c.commit, c.dir) for c in checked]
        )
        reference = d.reference_datetime or checked[-1].author_date

        base_manifests: list[tuple[str, str]] = []
        try:
            for suite in d.suites:
                for arch in d.architectures:
                    log.info(f"--- Building for {suite} {arch} ---")
                    self._configuration(suite, arch, reference)
                    manifest = (h.var / f"base-{suite}-{arch}.manifest").read_text(
                        encoding="utf-8", errors="surrogateescape"
                    )
                    base_manifests.append((f"{suite}-{arch}", manifest))
            if not self.opts.skip_cleanup and self._live is not None:
                with self.step("Cleaning up target"):
                    self._stop_live()
        except BaseException:
            self._stop_live_on_error()
            raise

        with self.step("Generating report"):
            out_entries = hashing.hash_tree(h.build / "out", where="build/out")
            out_manifest = hashing.manifest_text(out_entries)
            self._print(out_manifest)
            common = package = ""
            if d.enable_cache:
                common = hashing.manifest_text(
                    hashing.hash_tree(h.cache / "common", where="cache/common")
                )
                package = hashing.manifest_text(
                    hashing.hash_tree(h.cache / d.name, where=f"cache/{d.name}")
                )
            report = Report(
                out_manifest=out_manifest,
                in_manifest=in_manifest,
                base_manifests=tuple(base_manifests),
                cache_common_manifest=common,
                cache_package_manifest=package,
            )
            data = dump_result(report)
            path = h.result_file(d.name)
            write_atomic(path, data)
        digest = hashlib.sha256(data).hexdigest()
        self._print(f"{digest}  {path.name}\n")
        log.info("Done.")
        return BuildResult(report, path, digest, list(self.timings))

    # -- targets ------------------------------------------------------------
    def _stop_live(self) -> None:
        t, self._live = self._live, None
        if t is not None:
            t.stop()

    def _stop_live_on_error(self) -> None:
        if self._live is None:
            return
        with signals_held():
            try:
                self._stop_live()
            except Exception as e:  # the original error matters more
                log.warn(f"stopping the target failed too: {e}")

    def _configuration(self, suite: str, arch: str, reference: str) -> None:
        d, h, o = self.desc, self.home, self.opts
        for p in (self.install_log, self.build_log):
            p.unlink(missing_ok=True)
        target = self.make_target(suite, arch)
        personality = d.setarch(arch)
        with self.step("Stopping target if it is up"):
            self._stop_live()
            target.stop()
        if not o.skip_image:
            with self.step("Making a new image copy"):
                target.reset()
        self._live = target
        with self.step("Starting target"):
            target.start()
        with self.step("Checking if target is up"):
            target.wait_ready(60.0)
        user = target.config.user

        if d.sudo and o.allow_sudo:
            with self.step(f"Allowing sudo for {user}"):
                line = f"%{user} ALL=(ALL) NOPASSWD: ALL\n".encode()
                target.run(
                    ["tee", "-a", f"/etc/sudoers.d/{user}"],
                    user="root",
                    stdin=line,
                    stdout=subprocess.DEVNULL,
                )

        with self.step("Preparing build environment"):
            target.run(
                ["setarch", personality, "bash"],
                stdin=(target_bin() / "init-build.sh").read_bytes(),
            )
            target.run(
                ["install", "-m", "0755", "/dev/stdin", CANON_ZIP],
                user="root",
                stdin=(target_bin() / "canon-zip").read_bytes(),
            )
            for f in d.files:
                self._copy_input_file(target, f)
            if d.enable_cache:
                for cache in (h.cache / d.name, h.cache / "common"):
                    if cache.is_dir():
                        target.copy_to(cache, "cache")

        with self.install_log.open("ab") as ilog:
            if not target.binds_package_cache:
                with self.step("Restoring downloaded packages"):
                    self._push_debs(target, arch)
            if d.multiarch:
                with self.step("Adding multiarch support (log in var/install.log)", external=True):
                    for a in d.multiarch:
                        self._root(target, ilog, ["dpkg", "--add-architecture", a])
            if d.repositories:
                with self.step(
                    "Adding repositories to the sources list (log in var/install.log)",
                    external=True,
                ):
                    for r in d.repositories:
                        self._root(
                            target, ilog, ["tee", "-a", "/etc/apt/sources.list"],
                            stdin=(r.source + "\n").encode(),
                        )  # fmt: skip
            with self.step("Updating apt-get repository (log in var/install.log)", external=True):
                self._root(target, ilog, ["apt-get", "update"], network=True)
            if d.packages:
                with self.step(
                    "Installing additional packages (log in var/install.log)", external=True
                ):
                    self._root(
                        target, ilog,
                        ["apt-get", "--no-install-recommends", "-y", "install", *d.packages],
                        network=True,
                    )  # fmt: skip
            for r in d.repositories:
                title = f"Installing additional packages from repository {r.distribution}"
                with self.step(f"{title} (log in var/install.log)", external=True):
                    self._root(
                        target, ilog,
                        ["apt-get", "-t", r.distribution, "--no-install-recommends", "-y",
                         "install", *r.packages],
                        network=True,
                    )  # fmt: skip
            if d.alternatives:
                with self.step("Set alternatives (log in var/install.log)", external=True):
                    for alt in d.alternatives:
                        self._root(
                            target, ilog, ["update-alternatives", "--set", alt.package, alt.path]
                        )
            if o.upgrade or self._needs_upgrade(target):
                with self.step(
                    "Upgrading system, may take a while (log in var/install.log)", external=True
                ):
                    self._root(
                        target, ilog, ["bash"], network=True,
                        stdin=(target_bin() / "upgrade-system.sh").read_bytes(),
                    )  # fmt: skip
            with self.step("Creating package manifest"):
                manifest = self._host_package_manifest(target)
                if manifest is None:
                    manifest = self._grab_packages(target, ilog)
                write_atomic(h.var / f"base-{suite}-{arch}.manifest", manifest)
            if not target.binds_package_cache:
                with self.step("Saving downloaded packages"):
                    self._pull_debs(target)

        with self.step("Creating build script (var/build-script)"):
            for c in self._checked:
                # exactly the refs this command asked for, not what inputs/ holds
                with inputs.handover(h, c) as repo:
                    target.copy_to(repo, "build")
            text = buildscript.build_script(
                buildscript.ScriptParams(
                    name=d.name,
                    bits=d.bits(arch),
                    num_procs=o.num_procs,
                    memory_mib=o.memory_mib,
                    reference_datetime=reference,
                    script=d.script,
                    enable_cache=d.enable_cache,
                    remote_dirs=[r.dir for r in d.remotes],
                )
            )
            write_atomic(h.var / "build-script", text.encode("utf-8"))

        with self.step("Running build script (log in var/build.log)", external=True):
            self._run_build_script(target, personality, suite, arch)

        with self.step("Grabbing results from target"):
            target.copy_from("out", h.build)

        if d.enable_cache and not o.cache_read_only:
            with self.step("Grabbing cache from target"):
                for name in (d.name, "common"):
                    self._grab_cache(target, name)

    # -- the steps' pieces ----------------------------------------------------
    def _root(
        self,
        target: Target,
        logf: IO[bytes],
        argv: list[str],
        *,
        stdin: bytes | None = None,
        network: bool = False,
    ) -> None:
        """A root command on the target, output appended to var/install.log."""
        logf.flush()
        res = target.run(
            argv,
            user="root",
            env={"DEBIAN_FRONTEND": "noninteractive"},
            stdin=stdin,
            stdout=logf,
            stderr=subprocess.STDOUT,
            network=network,
            check=False,
        )
        logf.flush()
        if res.returncode != 0:
            raise self._log_error(
                f"{' '.join(argv[:3])}{' ...' if len(argv) > 3 else ''} failed on the target "
                f"with exit status {res.returncode}",
                self.install_log,
            )

    def _grab_packages(self, target: Target, ilog: IO[bytes]) -> bytes:
        """The base manifest from target-bin/grab-packages.sh (downloads what is missing)."""
        ilog.flush()
        res = target.run(
            ["bash"],
            user="root",
            stdin=(target_bin() / "grab-packages.sh").read_bytes(),
            stdout=subprocess.PIPE,
            stderr=ilog,
            env={"DEBIAN_FRONTEND": "noninteractive"},
            network=True,
            check=False,
        )
        ilog.flush()
        if res.returncode != 0:
            raise self._log_error(
                f"target-bin/grab-packages.sh failed with exit status {res.returncode}",
                self.install_log,
            )
        return res.stdout

    def _host_package_manifest(self, target: Target) -> bytes | None:
        """The same manifest as grab-packages.sh, hashed here when the target's
        /var/cache/apt/archives is the host's .deb cache and already holds every
        installed package: then it costs a dpkg-query and (memoised) hashing.
        None when that is not the case; grab-packages.sh then does it all."""
        if not target.binds_package_cache:
            return None
        res = target.run(["dpkg-query", "-W", "-f", DPKG_FORMAT], capture=True, check=False)
        if res.returncode != 0:
            return None
        names = set()
        for line in res.stdout.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "ii":
                names.add(parts[2].replace(":", "%3a", 1))  # as apt names the file
        cache = self.home.package_cache
        if not names or not all(
            DEB_NAME.fullmatch(n) and (cache / n).is_file() and not (cache / n).is_symlink()
            for n in names
        ):
            return None
        memo = _DebMemo(self.home.var / "cache" / "debs.sha256")
        lines = [f"{memo.sha256(cache / n)}  {n}\n" for n in sorted(names, key=os.fsencode)]
        memo.save()
        return "".join(lines).encode()

    def _needs_upgrade(self, target: Target) -> bool:
        res = target.run(["test", "!", "-e", UPGRADE_MARKER], user="root", check=False)
        return res.returncode == 0

    def _log_error(self, what: str, logfile: Path) -> BuildError:
        tail = _tail(logfile, LOG_TAIL)
        rel = os.path.relpath(logfile, self.home.root)
        body = "".join(f"\n    {line}" for line in tail) if tail else "\n    (the log is empty)"
        return BuildError(
            f"{what}; last lines of {rel}:{body}\nwhole log: {logfile}",
            hint=f"read {logfile}; the generated script is {self.home.var / 'build-script'}"
            if logfile == self.build_log
            else f"read {logfile}",
        )

    def _copy_input_file(self, target: Target, name: str) -> None:
        src = self.home.inputs / name
        if not src.is_symlink():
            target.copy_to(src, "build")
            return
        # A linked input is copied as the file it points to, under its own name.
        with tempfile.TemporaryDirectory(dir=self.home.var, prefix=".input-") as tmp:
            staged = Path(tmp) / name
            real = os.path.realpath(src)
            try:
                os.link(real, staged)
            except OSError:
                shutil.copyfile(real, staged)
            target.copy_to(staged, "build")

    def _run_build_script(self, target: Target, personality: str, suite: str, arch: str) -> None:
        script = self.home.var / "build-script"
        argv = ["setarch", personality, "bash", "-x"]
        with open(script, "rb") as stdin, open(self.build_log, "wb") as blog:
            if self.opts.ci:
                rfd, wfd = os.pipe()
                tee = threading.Thread(target=_tee, args=(rfd, blog), daemon=True)
                tee.start()
                try:
                    res = target.run(
                        argv, stdin=stdin, stdout=wfd, stderr=subprocess.STDOUT,
                        network=True, check=False,
                    )  # fmt: skip
                finally:
                    os.close(wfd)
                    tee.join(timeout=10)
            else:
                res = target.run(
                    argv, stdin=stdin, stdout=blog, stderr=subprocess.STDOUT,
                    network=True, check=False,
                )  # fmt: skip
        if res.returncode != 0:
            raise self._log_error(
                f"the build script failed for {suite} {arch} with exit status {res.returncode}",
                self.build_log,
            )

    def _grab_cache(self, target: Target, name: str) -> None:
        """Copy ``cache/<name>`` back beside the old one, then swap it in."""
        dest = self.home.cache / name
        tmp = Path(tempfile.mkdtemp(dir=self.home.cache, prefix=f".incoming-{name}-"))
        try:
            target.copy_from(f"cache/{name}", tmp)
            new = tmp / name
            if not new.is_dir():
                raise TargetError(f"the target's cache/{name} did not come back as a directory")
            _swap_dirs(new, dest)
        finally:
            with signals_held():
                shutil.rmtree(tmp, ignore_errors=True)

    # -- the host-side .deb cache (for backends that cannot bind it) -----------
    def _target_debs(self, target: Target) -> set[str]:
        """The .deb file names in the target's /var/cache/apt/archives."""
        listing = target.run(
            [
                "find",
                ARCHIVES,
                "-maxdepth",
                "1",
                "-type",
                "f",
                "-name",
                "*.deb",
                "-printf",
                "%f\\n",
            ],
            user="root",
            capture=True,
        ).stdout.decode("utf-8", "replace")
        return {n for n in listing.splitlines() if DEB_NAME.fullmatch(n)}

    def _push_debs(self, target: Target, arch: str) -> None:
        """Give the target the cached .debs it does not hold yet (a VM image
        already carries its base's), and remember what it held."""
        self._debs_before = self._target_debs(target)
        cache = self.home.package_cache
        if not cache.is_dir():
            return
        archs = {"all", target.config.image_arch, *self.desc.multiarch}
        names = sorted(
            e.name
            for e in os.scandir(cache)
            if e.is_file(follow_symlinks=False)
            and DEB_NAME.fullmatch(e.name)
            and e.name[:-4].rsplit("_", 1)[-1] in archs
            and e.name not in self._debs_before
        )
        self._debs_before |= set(names)
        if not names:
            return
        tar = subprocess.Popen(
            ["tar", "-C", os.fspath(cache), "-cf", "-", "--", *names],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        try:
            assert tar.stdout is not None
            target.run(
                ["tar", "-C", ARCHIVES, "--no-same-owner", "-xf", "-"],
                user="root",
                stdin=tar.stdout,
            )
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            if tar.poll() is None:
                tar.kill()
            tar.wait()

    def _pull_debs(self, target: Target) -> None:
        """Keep the .debs this build downloaded in the host cache."""
        cache = self.home.package_cache
        cache.mkdir(parents=True, exist_ok=True)
        listing = self._target_debs(target) - self._debs_before
        have = {e.name for e in os.scandir(cache)}
        new = sorted(n for n in listing if n not in have)
        if not new:
            return
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".incoming-"))
        try:
            rfd, wfd = os.pipe()
            result: list[BaseException] = []
            reader = threading.Thread(
                target=_untar_debs, args=(rfd, tmp, set(new), result), daemon=True
            )
            reader.start()
            try:
                target.run(["tar", "-C", ARCHIVES, "-cf", "-", "--", *new], user="root", stdout=wfd)
            finally:
                os.close(wfd)
                reader.join()
            if result:
                raise TargetError(f"saving downloaded packages failed: {result[0]}")
            for n in new:
                p = tmp / n
                if p.is_file():
                    os.replace(p, cache / n)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# small helpers


class _DebMemo:
    """sha256 of .deb files in the shared cache, remembered by name, size,
    mtime and inode (apt never rewrites a .deb in place)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, tuple[str, str]] = {}
        self.dirty = False
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                name, key, sha = line.split("\t")
                self.known[name] = (key, sha)
        except (OSError, ValueError):
            self.known = {}

    def sha256(self, p: Path) -> str:
        st = p.stat()
        key = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        hit = self.known.get(p.name)
        if hit is not None and hit[0] == key:
            return hit[1]
        sha = hashing.sha256_file(p)
        self.known[p.name] = (key, sha)
        self.dirty = True
        return sha

    def save(self) -> None:
        if self.dirty:
            text = "".join(f"{n}\t{k}\t{s}\n" for n, (k, s) in sorted(self.known.items()))
            write_atomic(self.path, text.encode())
            self.dirty = False


def _tail(path: Path, n: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").rstrip("\n").splitlines()[-n:]


def _tee(rfd: int, logf: IO[bytes]) -> None:
    with os.fdopen(rfd, "rb", buffering=0) as r:
        while True:
            chunk = r.read(65536)
            if not chunk:
                break
            logf.write(chunk)
            logf.flush()
            try:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            except (OSError, ValueError):
                pass


def _untar_debs(rfd: int, dest: Path, wanted: set[str], errors: list[BaseException]) -> None:
    """Read a tar stream of .deb files; keep only regular files with expected names."""
    try:
        with os.fdopen(rfd, "rb") as r, tarfile.open(fileobj=r, mode="r|") as tf:
            for member in tf:
                if not member.isreg() or member.name not in wanted:
                    continue
                src = tf.extractfile(member)
                if src is None:
                    continue
                with open(dest / member.name, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except BaseException as e:  # reported by the caller
        errors.append(e)
        with contextlib.suppress(OSError):
            os.close(rfd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange(a: Path, b: Path) -> bool:
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn: Any = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: fall back
            return False
        raise OSError(err, os.strerror(err), os.fspath(b))
    return True


def _swap_dirs(new: Path, dest: Path) -> None:
    """Put ``new`` in place of ``dest`` in one step; the old tree goes to ``new``."""
    with signals_held():
        if dest.exists():
            if _renameat2_exchange(new, dest):
                return
            old = dest.with_name(f".old-{dest.name}-{os.getpid()}")
            os.rename(dest, old)
            try:
                os.rename(new, dest)
            except BaseException:
                os.rename(old, dest)
                raise
            os.rename(old, new)
        else:
            os.rename(new, dest)


def configurations(desc: Descriptor) -> list[tuple[str, str]]:
    """The (suite, arch) pairs in the order they are built."""
    return [(s, a) for s in desc.suites for a in desc.architectures]


def overhead(timings: list[tuple[str, float, bool]], total: float) -> float:
    """gbuild's own time: ``total`` minus package installation and the user's script."""
    return total - sum(t for _, t, external in timings if external)


__all__ = [
    "BuildError",
    "BuildOptions",
    "BuildResult",
    "Builder",
    "CommandError",
    "TargetFactory",
    "configurations",
    "overhead",
]

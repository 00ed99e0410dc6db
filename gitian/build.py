"""The gbuild pipeline (SPEC §3), written against :class:`~gitian.targets.base.Target` only.

One :class:`Builder` runs one descriptor: it checks everything it can before
starting anything, records the inputs, then for each suite and architecture
makes a clean target, installs packages (or starts from the installed-packages
layer of an earlier build, :mod:`gitian.layers`), runs the descriptor's script
and copies the results out; last it hashes the outputs and writes
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
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from gitian import buildscript, hashing, inputs, layers, log, scriptline
from gitian.bootstrap import UPGRADE_MARKER
from gitian.buildcache import BuildCaches
from gitian.debcache import DebCache
from gitian.descriptor import Descriptor
from gitian.errors import BuildError, GitianError, Interrupted
from gitian.home import Home, target_bin
from gitian.manifest import Report, dump_result, in_manifest_text
from gitian.run import remove_tree, write_atomic
from gitian.targets.base import Target

TargetFactory = Callable[[str, str], Target]
"""Makes the target for one configuration: ``(suite, arch) -> Target``."""

#: where gbuild puts target-bin/canon-zip: the build user's PATH in every target
CANON_ZIP = "/usr/local/bin/canon-zip"
LOG_TAIL = 20


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
    #: reuse and keep installed-packages layers (gbuild --no-layer-cache: False)
    layer_cache: bool = True
    #: how many layers per backend the home keeps (GITIAN_LAYER_LIMIT)
    layer_limit: int = layers.DEFAULT_LIMIT


@dataclass(frozen=True)
class ScriptCommand:
    """The command that runs the build script on the target, as ``user``
    (None: the build user) with ``env`` added to its environment."""

    argv: list[str]
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class BuildResult:
    report: Report
    result_file: Path
    result_sha256: str
    #: (step title, seconds, spent installing packages or in the user's script?)
    timings: list[tuple[str, float, bool]] = field(default_factory=list)


class Builder:
    """Runs one descriptor through the whole flow.  ``out`` receives what the
    classic tool printed on stdout (the out lines and the result's sha256).

    Each step of SPEC §3 is one method, so a variant of the flow (several
    rounds, a snapshot after the package step) is a different sequence of
    the same calls.
    """

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
        self.debs = DebCache(home)
        self.caches = BuildCaches(home, desc.name)
        self.layers = layers.LayerStore(home, limit=options.layer_limit)
        self._layers_made: set[str] = set()  # by this run
        self.out = out if out is not None else sys.stdout
        self.timings: list[tuple[str, float, bool]] = []
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
                except GitianError as e:  # say which step failed
                    if not isinstance(e, Interrupted) and not e.message.startswith(title):
                        e.message = f"{title}: {e.message}"
                    raise
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

    @property
    def results_dir(self) -> Path:
        """Where the target's out/ goes (build/, as classic)."""
        return self.home.build

    # -- the flow -----------------------------------------------------------
    def check(self) -> None:
        """Everything that can be checked before anything starts (SPEC §3.1)."""
        inputs.check_remotes(self.home, self.desc.remotes)
        inputs.check_files(self.home, self.desc.files)
        for script in ("init-build.sh", "grab-packages.sh", "upgrade-system.sh", "canon-zip"):
            if not (target_bin() / script).is_file():
                raise BuildError(f"target-bin/{script} is missing from this installation")

    def run(self) -> BuildResult:
        """The whole flow: check, record the inputs, build every configuration, report."""
        self.check()
        self.prepare_home()
        in_manifest, reference = self.record_inputs()
        configs = configurations(self.desc)
        base_manifests = []
        for i, (suite, arch) in enumerate(configs):
            log.info(f"--- Building for {suite} {arch} ---")
            keep = self.opts.skip_cleanup and i == len(configs) - 1
            manifest = self.build_configuration(suite, arch, reference, keep=keep)
            base_manifests.append((f"{suite}-{arch}", manifest))
        return self.write_report(in_manifest, base_manifests)

    def prepare_home(self) -> None:
        """Wipe build/, make result/ and var/, and the cache directories (SPEC §3.1)."""
        d, h = self.desc, self.home
        if h.build.is_symlink() or h.build.is_file():
            h.build.unlink()
        elif h.build.exists():
            remove_tree(h.build)  # any depth: shutil.rmtree recurses
        h.build.mkdir(parents=True)
        h.result.mkdir(parents=True, exist_ok=True)
        h.var.mkdir(parents=True, exist_ok=True)
        if d.enable_cache:
            self.caches.make()

    def record_inputs(self) -> tuple[str, str]:
        """Hash the input files and check out every remote (SPEC §3.2, §3.3);
        return the input manifest and the reference date and time."""
        d, h = self.desc, self.home
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
        return in_manifest, d.reference_datetime or checked[-1].author_date

    def build_configuration(
        self, suite: str, arch: str, reference: str, *, keep: bool = False
    ) -> str:
        """One suite and architecture in a clean target (SPEC §3.4); returns
        its base manifest.  ``keep``: leave the target running afterwards.

        The stack holds what the configuration starts (its target, and in a
        variant of the flow e.g. a snapshot of it) and undoes it on the way
        out, in reverse order, whatever ends the build."""
        for p in (self.install_log, self.build_log):
            p.unlink(missing_ok=True)
        with contextlib.ExitStack() as stack:
            target, manifest = self.packaged_target(stack, suite, arch, keep=keep)
            self.allow_sudo(target)
            self.prepare_build_area(target)
            params = self.write_build_script(target, arch, reference)
            self.run_build_script(target, params, suite, arch)
            self.collect_results(target)
        return manifest.decode("utf-8", "surrogateescape")

    def packaged_target(
        self, stack: contextlib.ExitStack, suite: str, arch: str, *, keep: bool = False
    ) -> tuple[Target, bytes]:
        """A started target for one configuration with the package step done,
        and its package manifest.  The package step comes first, before
        anything of the build goes in, so that its result can be kept.

        Where the backend keeps installed-packages layers (:mod:`gitian.layers`)
        and one fits, the target starts from it and no apt step runs; else
        the package step runs in a target from the base, is kept as a layer,
        and the build goes on in a fresh target started from it, as every
        later build with the same key will."""
        o, key, probe = self.opts, None, self.make_target(suite, arch)
        if o.layer_cache and o.layer_limit > 0 and not o.skip_image:
            key = layers.layer_key(self.desc, probe, upgrade=o.upgrade)
        if key is None:
            target = stack.enter_context(self.open_target(suite, arch, keep=keep))
            return target, self.install(target, suite, arch)
        # --upgrade upgrades anew once per run; later builds of the run share it.
        renew = o.upgrade and key.digest not in self._layers_made
        lease = stack.enter_context(self.layers.lease(key, probe, renew=renew))
        layer = lease.layer
        if layer is None:
            with self.open_target(suite, arch) as target:
                manifest = self.install(target, suite, arch)
                with self.step(f"Keeping the installed packages as layer {key.digest[:12]}"):
                    layer = lease.publish(target, manifest, self.install_log)
            self._layers_made.add(key.digest)
        else:
            with self.step(f"Using the installed-packages layer {layer.describe()}"):
                self._from_layer(layer, suite, arch)
        target = stack.enter_context(self.open_target(suite, arch, keep=keep, layer=layer.path))
        return target, layer.manifest

    def open_target(
        self, suite: str, arch: str, *, keep: bool = False, layer: Path | None = None
    ) -> contextlib.AbstractContextManager[Target]:
        """A clean, started target for one configuration, from the base or
        from ``layer`` (unless ``--skip-image``: the one left from before);
        stopped on the way out unless ``keep``."""
        target = self.make_target(suite, arch)
        if layer is not None:
            target.from_layer(layer)
        return target.session(
            reset=not self.opts.skip_image, keep=keep, ready_timeout=60.0, step=self.step
        )

    def allow_sudo(self, target: Target) -> None:
        """With ``sudo: true`` and ``--allow-sudo``: passwordless sudo for the build user."""
        if not (self.desc.sudo and self.opts.allow_sudo):
            return
        user = target.config.user
        with self.step(f"Allowing sudo for {user}"):
            line = f"%{user} ALL=(ALL) NOPASSWD: ALL\n".encode()
            target.run(
                ["tee", "-a", f"/etc/sudoers.d/{user}"],
                user="root",
                stdin=line,
                stdout=subprocess.DEVNULL,
            )

    def prepare_build_area(self, target: Target) -> None:
        """init-build.sh, then the input files and the caches into the target."""
        d = self.desc
        with self.step("Preparing build environment"):
            target.run(
                ["setarch", d.setarch(target.config.arch), "bash"],
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
                self.caches.copy_in(target)

    def install(self, target: Target, suite: str, arch: str) -> bytes:
        """The package step: everything apt does (output in var/install.log),
        then the package manifest, written to var/ and returned."""
        pushed = None
        if not target.binds_package_cache:
            with self.step("Restoring downloaded packages"):
                archs = {"all", target.config.image_arch, *self.desc.multiarch}
                pushed = self.debs.push(target, archs)
        with self.install_log.open("ab") as ilog:
            self.install_packages(target, ilog)
            self.upgrade_system(target, ilog)
            with self.step("Creating package manifest"):
                manifest = self.debs.manifest(target)
                if manifest is None:
                    manifest = self._grab_packages(target, ilog)
                write_atomic(self.home.var / f"base-{suite}-{arch}.manifest", manifest)
        if pushed is not None:
            with self.step("Saving downloaded packages"):
                self.debs.pull(target, pushed)
        return manifest

    def install_packages(self, target: Target, ilog: IO[bytes]) -> None:
        """multiarch, repositories, apt-get update, packages, repository
        packages, alternatives, in the classic order."""
        d = self.desc
        if d.multiarch:
            with self.step("Adding multiarch support (log in var/install.log)", external=True):
                for a in d.multiarch:
                    self._root(target, ilog, ["dpkg", "--add-architecture", a])
        if d.repositories:
            with self.step(
                "Adding repositories to the sources list (log in var/install.log)", external=True
            ):
                for r in d.repositories:
                    self._root(
                        target, ilog, ["tee", "-a", "/etc/apt/sources.list"],
                        stdin=(r.source + "\n").encode(),
                    )  # fmt: skip
        with self.step("Updating apt-get repository (log in var/install.log)", external=True):
            self._root(target, ilog, ["apt-get", "update"], network=True)
        if d.packages:
            title = "Installing additional packages (log in var/install.log)"
            with self.step(title, external=True):
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

    def _from_layer(self, layer: layers.Layer, suite: str, arch: str) -> None:
        """var/install.log and the package manifest, as the layer's package step left them."""
        head = f"# the log of installed-packages layer {layer.describe()}; nothing ran now\n"
        with open(layer.install_log, "rb") as src:
            write_atomic(self.install_log, head.encode() + src.read())
        write_atomic(self.home.var / f"base-{suite}-{arch}.manifest", layer.manifest)

    def upgrade_system(self, target: Target, ilog: IO[bytes]) -> None:
        """upgrade-system.sh with ``--upgrade``, or when the target never was upgraded."""
        if not (self.opts.upgrade or self._needs_upgrade(target)):
            return
        with self.step(
            "Upgrading system, may take a while (log in var/install.log)", external=True
        ):
            self._root(
                target, ilog, ["bash"], network=True,
                stdin=(target_bin() / "upgrade-system.sh").read_bytes(),
            )  # fmt: skip

    def write_build_script(
        self, target: Target, arch: str, reference: str
    ) -> buildscript.ScriptParams:
        """Copy the remotes into the target and write var/build-script."""
        h = self.home
        with self.step("Creating build script (var/build-script)"):
            for c in self._checked:
                # exactly the refs this command asked for, not what inputs/ holds
                with inputs.handover(h, c) as repo:
                    target.copy_to(repo, "build")
            params = self.script_params(arch, reference)
            text = buildscript.build_script(params)
            write_atomic(h.var / "build-script", text.encode("utf-8"))
        return params

    def script_params(self, arch: str, reference: str) -> buildscript.ScriptParams:
        """What var/build-script is made from, for one architecture."""
        d, o = self.desc, self.opts
        return buildscript.ScriptParams(
            name=d.name,
            bits=d.bits(arch),
            num_procs=o.num_procs,
            memory_mib=o.memory_mib,
            reference_datetime=reference,
            script=d.script,
            enable_cache=d.enable_cache,
            remote_dirs=[r.dir for r in d.remotes],
        )

    def script_command(self, target: Target, personality: str) -> ScriptCommand:
        """How the build script (given on stdin) runs on the target."""
        return ScriptCommand(["setarch", personality, "bash", "-x"])

    def run_build_script(
        self, target: Target, params: buildscript.ScriptParams, suite: str, arch: str
    ) -> None:
        """var/build-script with ``bash -x`` under setarch; output in var/build.log.
        A failure names the line of the descriptor's script it stopped at."""
        with self.step("Running build script (log in var/build.log)", external=True):
            rc = self._run_build_script(target, self.desc.setarch(arch))
            if rc != 0:
                what = f"the build script failed for {suite} {arch} with exit status {rc}"
                where = scriptline.describe(self.build_log, params, self.desc)
                raise self._log_error(what + where, self.build_log)

    def collect_results(self, target: Target) -> None:
        """The target's out/ into build/; the caches back unless ``-o``."""
        d = self.desc
        with self.step("Grabbing results from target"):
            target.copy_from("out", self.results_dir)
        if d.enable_cache and not self.opts.cache_read_only:
            with self.step("Grabbing cache from target"):
                self.caches.copy_back(target)

    def write_report(self, in_manifest: str, base_manifests: list[tuple[str, str]]) -> BuildResult:
        """Hash the outputs and caches and write result/<name>-res.yml (SPEC §3.6)."""
        d, h = self.desc, self.home
        with self.step("Generating report"):
            out_entries = hashing.hash_tree(h.build / "out", where="build/out")
            out_manifest = hashing.manifest_text(out_entries)
            self._print(out_manifest)
            common, package = self.caches.manifests() if d.enable_cache else ("", "")
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

    def _needs_upgrade(self, target: Target) -> bool:
        res = target.run(["test", "!", "-e", UPGRADE_MARKER], user="root", check=False)
        return res.returncode == 0

    def _log_error(self, what: str, logfile: Path) -> BuildError:
        tail = log.tail(logfile, LOG_TAIL).splitlines()
        rel = logfile.relative_to(self.home.root)
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
            real = src.resolve()
            try:
                staged.hardlink_to(real)
            except OSError:
                shutil.copyfile(real, staged)
            target.copy_to(staged, "build")

    def _run_build_script(self, target: Target, personality: str) -> int:
        script = self.home.var / "build-script"
        command = self.script_command(target, personality)
        argv, user, env = command.argv, command.user, command.env
        with open(script, "rb") as stdin, open(self.build_log, "wb") as blog:
            if self.opts.ci:
                rfd, wfd = os.pipe()
                tee = threading.Thread(target=log.tee, args=(rfd, blog), daemon=True)
                tee.start()
                try:
                    res = target.run(
                        argv, user=user, env=env, stdin=stdin, stdout=wfd,
                        stderr=subprocess.STDOUT, network=True, check=False,
                    )  # fmt: skip
                finally:
                    os.close(wfd)
                    tee.join(timeout=10)
            else:
                res = target.run(
                    argv, user=user, env=env, stdin=stdin, stdout=blog,
                    stderr=subprocess.STDOUT, network=True, check=False,
                )  # fmt: skip
        return res.returncode


def configurations(desc: Descriptor) -> list[tuple[str, str]]:
    """The (suite, arch) pairs in the order they are built."""
    return [(s, a) for s in desc.suites for a in desc.architectures]


def overhead(timings: list[tuple[str, float, bool]], total: float) -> float:
    """gbuild's own time: ``total`` minus package installation and the user's script."""
    return total - sum(t for _, t, external in timings if external)

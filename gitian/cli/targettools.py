"""The classic target tools: make-base-vm and the libexec commands.

Same names, flags and environment variables as the classic shell scripts
(SPEC §6, §7), plus ``--backend NAME`` and ``--workdir DIR`` on each.  The
libexec tools run one process per command, so ``start-target`` records which
target runs (backend, suite, arch, distro) in ``var/target.json`` and the
others read it; ``stop-target`` removes it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from gitian import log
from gitian.cli import backend_option, entry, workdir_option
from gitian.errors import ToolMissingError, UsageError
from gitian.home import Home
from gitian.layers import LayerStore, human, listing
from gitian.run import write_atomic
from gitian.targets import (
    BACKENDS,
    backend_class,
    check_default_backend,
    choose_backend,
    config_from_env,
    make_target,
)
from gitian.targets.base import BaseOptions, Target

STATE_FILE = "target.json"
CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@dataclass(frozen=True)
class TargetState:
    """What start-target leaves in ``var/target.json`` for the other tools."""

    backend: str
    suite: str
    arch: str
    distro: str

    @classmethod
    def load(cls, home: Home) -> TargetState | None:
        path = home.var / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return cls(
                backend=str(data["backend"]),
                suite=str(data["suite"]),
                arch=str(data["arch"]),
                distro=str(data["distro"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{path} is unreadable ({e})", hint="run stop-target") from None

    def save(self, home: Home) -> None:
        data = {"backend": self.backend, "suite": self.suite, "arch": self.arch}
        data["distro"] = self.distro
        write_atomic(home.var / STATE_FILE, (json.dumps(data, indent=1) + "\n").encode())

    @staticmethod
    def remove(home: Home) -> None:
        (home.var / STATE_FILE).unlink(missing_ok=True)


def _env() -> Mapping[str, str]:
    return os.environ


def _target(
    home: Home,
    backend: str | None,
    *,
    suite: str | None = None,
    arch: str | None = None,
    distro: str | None = None,
    making: bool = False,
) -> tuple[str, Target]:
    """The target a libexec tool works on: explicit values, else var/target.json,
    else LXC_SUITE/LXC_ARCH/DISTRO from the environment.  ``making``: the tool
    makes or starts a target, so the backend is ``--backend`` or the USE_*
    variables (never the one recorded), and when neither chose it, it must
    have a base here (:func:`check_default_backend`)."""
    env = _env()
    state = TargetState.load(home)
    if making:
        name = choose_backend(backend, env)
    else:
        name = backend or (state.backend if state else None) or choose_backend(None, env)
        name = choose_backend(name, env)
    suite = suite or (state.suite if state else None) or env.get("LXC_SUITE") or None
    arch = arch or (state.arch if state else None) or env.get("LXC_ARCH") or None
    distro = distro or (state.distro if state else None) or env.get("DISTRO") or "ubuntu"
    if not suite or not arch:
        raise UsageError(
            "no target is started here (no var/target.json)",
            hint="run start-target BITS SUITE-ARCH first, or set LXC_SUITE and LXC_ARCH",
        )
    config = config_from_env(home, backend=name, suite=suite, arch=arch, env=env, distro=distro)
    if making:
        check_default_backend(backend, env, config)
    reason = backend_class(name).unavailable_reason(config=config)
    if reason:
        raise ToolMissingError(f"the {name} backend cannot run here: {reason}")
    return name, make_target(name, config)


# -- make-base-vm ------------------------------------------------------------


@click.command(context_settings=CONTEXT)
@click.option("--distro", default="ubuntu", show_default=True, help="Distribution (build user).")
@click.option("--suite", default="xenial", show_default=True, help="Release code name.")
@click.option("--arch", default="amd64", show_default=True, help="amd64 or i386.")
@click.option("--disksize", default=12287, type=int, show_default=True, help="Disk size (MB).")
@click.option("--lxc", "use_lxc", is_flag=True, help="Make an LXC base.")
@click.option("--bwrap", "use_bwrap", is_flag=True, help="Make a bubblewrap base.")
@click.option("--vbox", "use_vbox", is_flag=True, help="Make a VirtualBox base.")
@click.option("--docker", "use_docker", is_flag=True, help="Make a Docker base.")
@click.option("--docker-image-hash", default=None, help="Base the Docker image on this digest.")
@click.option("--mirror", default=None, help="Archive URI (default: MIRROR_HOST, host's apt).")
@click.option(
    "--force",
    is_flag=True,
    help="Make the base anew even if one that serves exists (bubblewrap and LXC share "
    "one base; KVM and Docker bases are always made anew).",
)
@click.option(
    "--list-layers",
    is_flag=True,
    help="List gbuild's installed-packages layers in this home instead (see docs/layers.md).",
)
@click.option(
    "--clear-layers",
    is_flag=True,
    help="Remove gbuild's installed-packages layers in this home instead (only the chosen "
    "backend's with --lxc, --bwrap, --docker or --backend).",
)
@backend_option
@workdir_option
def make_base_vm_cmd(
    distro: str,
    suite: str,
    arch: str,
    disksize: int,
    use_lxc: bool,
    use_bwrap: bool,
    use_vbox: bool,
    use_docker: bool,
    docker_image_hash: str | None,
    mirror: str | None,
    force: bool,
    list_layers: bool,
    clear_layers: bool,
    backend: str | None,
    workdir: str | None,
) -> None:
    """Make the base image base-SUITE-ARCH for a backend."""
    flags = [
        n
        for n, on in (
            ("lxc", use_lxc),
            ("bwrap", use_bwrap),
            ("vbox", use_vbox),
            ("docker", use_docker),
        )
        if on
    ]
    if len(flags) > 1:
        raise UsageError(f"choose one of --{' / --'.join(flags)}")
    if flags and backend and flags[0] != backend:
        raise UsageError(f"--{flags[0]} contradicts --backend {backend}")
    env = _env()
    if list_layers or clear_layers:
        chosen = backend or (flags[0] if flags else None)
        _layers(Home.find(workdir), chosen, clear=clear_layers, env=env)
        return
    name = choose_backend(backend or (flags[0] if flags else None), env)
    if disksize <= 0:
        raise UsageError(f"--disksize must be positive, not {disksize}")
    options = BaseOptions(
        distro=distro,
        suite=suite,
        arch="amd64" if arch == "linux64" else arch,
        disksize_mb=disksize,
        mirror=mirror,
        docker_image_hash=docker_image_hash,
        force=force,
    )
    home = Home.find(workdir)
    config = config_from_env(
        home, backend=name, suite=options.suite, arch=options.arch, env=env, distro=distro
    )
    # Everything the host lacks is said before anything starts.
    reason = backend_class(name).unavailable_reason(for_base=True, config=config)
    if reason:
        raise ToolMissingError(f"cannot make a base for the {name} backend: {reason}")
    with log.step(f"make-base-vm ({name}, {distro} {suite} {options.arch})"):
        make_target(name, config).make_base(options)


def _layers(home: Home, backend: str | None, *, clear: bool, env: Mapping[str, str]) -> None:
    """make-base-vm --list-layers / --clear-layers (of ``backend``, else all)."""
    store = LayerStore(home)
    if not clear:
        shown = [la for la in store.layers() if backend in (None, la.backend)]
        click.echo(listing(shown), nl=False)
        return
    targets: dict[str, Target] = {}

    def drop(name: str, path: Path) -> None:
        if name not in BACKENDS:
            return  # a layer directory of no backend we know holds nothing outside it
        if name not in targets:
            config = config_from_env(home, backend=name, suite="any", arch="amd64", env=env)
            targets[name] = make_target(name, config)
        targets[name].drop_layer(path)

    removed = store.clear(drop, backend=backend)
    click.echo(f"removed {len(removed)} layer(s), {human(sum(la.size for la in removed))}")


# -- make-clean-vm, start-target, stop-target -------------------------------------


@click.command(context_settings=CONTEXT)
@click.option("--suite", default=None, help="Release code name (default: LXC_SUITE, xenial).")
@click.option("--arch", default=None, help="amd64 or i386 (default: LXC_ARCH, amd64).")
@click.option("--distro", default=None, help="Distribution (default: DISTRO, ubuntu).")
@backend_option
@workdir_option
def make_clean_vm_cmd(
    suite: str | None,
    arch: str | None,
    distro: str | None,
    backend: str | None,
    workdir: str | None,
) -> None:
    """Make a fresh target from the base."""
    env = _env()
    home = Home.find(workdir)
    suite = suite or env.get("LXC_SUITE") or "xenial"
    arch = arch or env.get("LXC_ARCH") or "amd64"
    arch = "amd64" if arch == "linux64" else arch
    name, target = _target(home, backend, suite=suite, arch=arch, distro=distro, making=True)
    target.reset()
    log.debug(f"clean {name} target for {suite}-{arch}")


@click.command(context_settings=CONTEXT)
@click.argument("bits")
@click.argument("suite_arch", metavar="SUITE-ARCH")
@backend_option
@workdir_option
def start_target_cmd(bits: str, suite_arch: str, backend: str | None, workdir: str | None) -> None:
    """Start the target made by make-clean-vm."""
    if bits not in ("32", "64"):
        raise UsageError(f"BITS must be 32 or 64, not {bits!r}")
    suite, sep, arch = suite_arch.rpartition("-")
    if not sep or not suite or not arch:
        raise UsageError(f"expected SUITE-ARCH (e.g. bookworm-amd64), not {suite_arch!r}")
    arch = "amd64" if arch == "linux64" else arch
    home = Home.find(workdir)
    name, target = _target(home, backend, suite=suite, arch=arch, making=True)
    state = TargetState(name, suite, arch, target.config.distro)
    state.save(home)
    try:
        target.start()
    except BaseException:
        TargetState.remove(home)
        raise


@click.command(context_settings=CONTEXT)
@backend_option
@workdir_option
def stop_target_cmd(backend: str | None, workdir: str | None) -> None:
    """Stop the running target; does nothing when none runs."""
    home = Home.find(workdir)
    if TargetState.load(home) is None and not (_env().get("LXC_SUITE") and _env().get("LXC_ARCH")):
        log.debug("no target is started here")
        return
    _, target = _target(home, backend)
    target.stop()
    TargetState.remove(home)


# -- on-target, copy-to-target, copy-from-target -------------------------------


def _assignments(specs: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for spec in specs:
        for word in spec.split():
            k, sep, v = word.partition("=")
            if not sep or not k:
                raise UsageError(f"-e takes NAME=VALUE words, not {word!r}")
            env[k] = v
    return env


@click.command(
    context_settings={**CONTEXT, "allow_interspersed_args": False},
)
@click.option("-u", "--user", default=None, help="Target user (default: DISTRO, else ubuntu).")
@click.option("-e", "--env", "env_specs", multiple=True, help='"NAME=VAL ..." to set.')
@backend_option
@workdir_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def on_target_cmd(
    user: str | None,
    env_specs: tuple[str, ...],
    backend: str | None,
    workdir: str | None,
    command: tuple[str, ...],
) -> int:
    """Run COMMAND on the target; stdin is passed through, the exit status back."""
    env = _assignments(env_specs)
    home = Home.find(workdir)
    _, target = _target(home, backend)
    stdin = None if sys.stdin is None or sys.stdin.closed else sys.stdin.buffer
    sys.stdout.flush()
    res = target.run(
        list(command),
        user=user,
        env=env,
        stdin=stdin,
        stdout=sys.stdout.buffer,
        stderr=sys.stderr.buffer,
        check=False,
    )
    return res.returncode


@click.command(context_settings=CONTEXT)
@click.option("-u", "--user", default=None, help="Target user (default: DISTRO, else ubuntu).")
@click.option("-q", "--quiet", is_flag=True, help="Accepted for compatibility.")
@backend_option
@workdir_option
@click.argument("src", type=click.Path(exists=True, path_type=str))
@click.argument("dest")
def copy_to_target_cmd(
    user: str | None, quiet: bool, backend: str | None, workdir: str | None, src: str, dest: str
) -> None:
    """Copy a host file or tree SRC into DEST (relative to the user's home)."""
    from pathlib import Path

    home = Home.find(workdir)
    _, target = _target(home, backend)
    target.copy_to(Path(src), dest, user=user)


@click.command(context_settings=CONTEXT)
@click.option("-u", "--user", default=None, help="Target user (default: DISTRO, else ubuntu).")
@click.option("-q", "--quiet", is_flag=True, help="Accepted for compatibility.")
@backend_option
@workdir_option
@click.argument("src")
@click.argument("dest", type=click.Path(file_okay=False, path_type=str))
def copy_from_target_cmd(
    user: str | None, quiet: bool, backend: str | None, workdir: str | None, src: str, dest: str
) -> None:
    """Copy the target's SRC (relative to the user's home) into host directory DEST."""
    from pathlib import Path

    home = Home.find(workdir)
    _, target = _target(home, backend)
    target.copy_from(src, Path(dest), user=user)


make_base_vm = entry(make_base_vm_cmd, "make-base-vm")
make_clean_vm = entry(make_clean_vm_cmd, "make-clean-vm")
start_target = entry(start_target_cmd, "start-target")
stop_target = entry(stop_target_cmd, "stop-target")
on_target = entry(on_target_cmd, "on-target")
copy_to_target = entry(copy_to_target_cmd, "copy-to-target")
copy_from_target = entry(copy_from_target_cmd, "copy-from-target")

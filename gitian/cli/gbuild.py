"""gbuild: build a descriptor in clean targets and write result/<name>-res.yml (SPEC §3)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import click

from gitian import layers, log, variations
from gitian.build import Builder, BuildOptions, configurations
from gitian.cli import backend_option, entry, workdir_option
from gitian.descriptor import load, parse_assignments
from gitian.errors import ToolMissingError, UsageError
from gitian.home import Home
from gitian.rounds import RoundBuilder, Vary, build_rounds, check_options
from gitian.targets import (
    backend_class,
    check_default_backend,
    choose_backend,
    config_from_env,
    make_target,
)
from gitian.targets.base import Target, TargetConfig

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


@click.command(context_settings=CONTEXT)
@click.option(
    "--allow-sudo",
    is_flag=True,
    help="Override SECURITY on the target and allow passwordless sudo for the build user "
    "(only when the descriptor says sudo: true).",
)
@click.option("-i", "--skip-image", is_flag=True, help="Reuse the current target image.")
@click.option("--upgrade", is_flag=True, help="Upgrade the target with the latest packages.")
@click.option("-q", "--quiet", is_flag=True, help="Be quiet.")
@click.option(
    "-j",
    "--num-make",
    "num_make",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    metavar="PROCS",
    help="Number of processes to use.",
)
@click.option(
    "-m",
    "--memory",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    metavar="MEM",
    help="Memory to allocate in MiB.",
)
@click.option(
    "-c",
    "--commit",
    "commits",
    multiple=True,
    metavar="PAIRS",
    help="Comma separated list of DIRECTORY=COMMIT pairs.",
)
@click.option(
    "-u",
    "--url",
    "urls",
    multiple=True,
    metavar="PAIRS",
    help="Comma separated list of DIRECTORY=URL pairs.",
)
@click.option(
    "-o",
    "--cache-read-only",
    is_flag=True,
    help="Only use existing cache files, do not update them.",
)
@click.option(
    "--skip-fetch",
    is_flag=True,
    help="Skip fetching the latest git objects and refs from the remote source.",
)
@click.option("--fetch-branches", is_flag=True, help="Fetch branches from the remote source.")
@click.option("--fetch-tags", is_flag=True, help="Fetch tags from the remote source.")
@click.option(
    "--skip-cleanup",
    is_flag=True,
    help="Skip cleaning up the target; useful for copying more files from it after the build.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Build N times, each in a fresh target, and write the result only if all agree "
    "(docs/determinism.md).",
)
@click.option(
    "--vary",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[=LIST]",
    help="With --rounds: vary every round after the first (all of "
    "tz,locale,umask,hostname,procs,path,time,dirorder, or those in LIST).",
)
@click.option(
    "--no-layer-cache",
    is_flag=True,
    help="Neither use nor keep an installed-packages layer: run every apt step "
    "(see docs/layers.md).",
)
@backend_option
@workdir_option
@click.argument("descriptor", type=click.Path(dir_okay=False), required=False)
def cli(
    allow_sudo: bool,
    skip_image: bool,
    upgrade: bool,
    quiet: bool,
    num_make: int,
    memory: int,
    commits: tuple[str, ...],
    urls: tuple[str, ...],
    cache_read_only: bool,
    skip_fetch: bool,
    fetch_branches: bool,
    fetch_tags: bool,
    skip_cleanup: bool,
    rounds: int,
    vary: str | None,
    no_layer_cache: bool,
    backend: str | None,
    workdir: str | None,
    descriptor: str | None,
) -> None:
    """Build DESCRIPTOR (<package>.yml) and write result/<name>-res.yml."""
    env = os.environ
    descriptor, varied = _vary_and_descriptor(vary, descriptor)
    if vary is not None and rounds < 2:
        raise UsageError("--vary needs --rounds 2 or more")
    if rounds > 1:
        check_options(BuildOptions(skip_image=skip_image, skip_cleanup=skip_cleanup), rounds)
    log.set_quiet(quiet)
    home = Home.find(workdir)

    desc = load(descriptor).with_overrides(
        parse_assignments(commits, "--commit"), parse_assignments(urls, "--url")
    )
    for line in desc.warnings:
        log.warn(line)
    name = choose_backend(backend, env)
    if name == "docker" and desc.docker_image_digests:
        # With Docker the digests stand in for the suite names (classic behaviour).
        desc = replace(desc, suites=desc.docker_image_digests)

    def config(suite: str, arch: str) -> TargetConfig:
        return config_from_env(
            home,
            backend=name,
            suite=suite,
            arch=arch,
            env=env,
            distro=desc.distro,
            memory_mib=memory,
            nprocs=num_make,
        )

    def make(suite: str, arch: str) -> Target:
        return make_target(name, config(suite, arch))

    options = BuildOptions(
        allow_sudo=allow_sudo,
        skip_image=skip_image,
        upgrade=upgrade,
        quiet=quiet,
        num_procs=num_make,
        memory_mib=memory,
        cache_read_only=cache_read_only,
        skip_fetch=skip_fetch,
        fetch_branches=fetch_branches,
        fetch_tags=fetch_tags,
        skip_cleanup=skip_cleanup,
        ci=bool(env.get("CI")),
        layer_cache=not no_layer_cache,
        layer_limit=layers.limit_from(env.get("GITIAN_LAYER_LIMIT")),
    )
    builder = (RoundBuilder if rounds > 1 else Builder)(desc, home, options, make)
    builder.check()  # bad input is reported before anything is stopped or started
    for suite, arch in configurations(desc):
        check_default_backend(backend, env, config(suite, arch))
    first = config(desc.suites[0], desc.architectures[0])
    reason = backend_class(name).unavailable_reason(config=first)
    if reason:
        raise ToolMissingError(f"the {name} backend cannot run here: {reason}")
    _stop_recorded_target(home)
    if isinstance(builder, RoundBuilder):
        build_rounds(builder, rounds, varied)
    else:
        builder.run()
    if skip_cleanup:
        _record_target(home, name, desc.suites[-1], desc.architectures[-1], desc.distro)


def _vary_and_descriptor(vary: str | None, descriptor: str | None) -> tuple[str, Vary]:
    """The descriptor and the variations.  ``--vary``'s value is optional, so
    in ``--vary desc.yml`` Click takes the descriptor for it."""
    if descriptor is None:
        if not vary or _is_vary_list(vary):
            raise UsageError("missing argument DESCRIPTOR")
        descriptor, vary = vary, ""
    return descriptor, frozenset() if vary is None else variations.parse(vary)


def _is_vary_list(value: str) -> bool:
    try:
        variations.parse(value)
    except UsageError:
        return False
    return True


def _stop_recorded_target(home: Home) -> None:
    """Stop a target left running by start-target or ``gbuild --skip-cleanup``."""
    from gitian.cli import targettools

    state = targettools.TargetState.load(home)
    if state is None:
        return
    config = config_from_env(
        home,
        backend=state.backend,
        suite=state.suite,
        arch=state.arch,
        env=os.environ,
        distro=state.distro,
    )
    if backend_class(state.backend).unavailable_reason(config=config) is None:
        with log.step("Stopping target left running"):
            make_target(state.backend, config).stop()
    targettools.TargetState.remove(home)


def _record_target(home: Home, backend: str, suite: str, arch: str, distro: str) -> None:
    """Let on-target / copy-from-target reach the target --skip-cleanup kept."""
    from gitian.cli import targettools

    targettools.TargetState(backend=backend, suite=suite, arch=arch, distro=distro).save(home)


main = entry(cli, "gbuild")

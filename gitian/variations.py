"""What ``gbuild --vary`` changes around a build, and how a target applies it.

Every round after the first of ``gbuild --rounds N --vary`` changes, from the
first round, what a deterministic build must not depend on (docs/determinism.md):

========== ==========================================================
tz         ``TZ`` in the build's environment (the first round has none)
locale     ``LANG``/``LC_ALL`` in the build script, and ``LANGUAGE``
umask      the build script's ``umask`` line
hostname   host and domain name (a UTS namespace of the build's own)
procs      ``NUM_PROCS``/``MAKEOPTS``, and the CPUs the build may use
path       the build user's home, so the build directory's path
time       the time the build's processes read (libfaketime)
dirorder   the order directories are listed in (disorderfs over build/)
========== ==========================================================

The first five need nothing from the target but a different build script and
environment; the others need root on the target to make namespaces or to
mount, and two small tools from the target's own archive.  ``vary-setup``
finds out which apply (a target that cannot says why) and fetches the tools;
``vary-build`` runs the build script as the build user with them.  Both run
as root, after the package manifest is taken, and install nothing: the tools
are unpacked beside the system, so no package manifest can see them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace

from gitian import log
from gitian.buildscript import ScriptParams
from gitian.errors import TargetError, UsageError
from gitian.home import target_bin
from gitian.targets.base import Target
from gitian.text import printable


class Variation(enum.StrEnum):
    """One thing a varied round changes; the value is its ``--vary`` name."""

    TZ = "tz"
    LOCALE = "locale"
    UMASK = "umask"
    HOSTNAME = "hostname"
    PROCS = "procs"
    PATH = "path"
    TIME = "time"
    DIRORDER = "dirorder"


ALL = frozenset(Variation)

#: the varied values (the first round has the classic ones)
TZ = "GMT-14"  # POSIX: UTC+14, the farthest from UTC; needs no tzdata
UMASK = "022"  # the classic script's is 002
HOSTNAME, DOMAINNAME = "gitian-varied", "varied.invalid"
PATH_ROOT = "/home/gitian-varied-path"  # + /<user>: a longer, deeper home
FAKETIME = "+373d"  # a year and a week ahead: another date, weekday and year
#: where vary-setup unpacks libfaketime and disorderfs on the target
TOOLS = "/var/lib/gitian-vary/tools"
#: the variations vary-setup must check (the others always apply)
CHECKED = (Variation.LOCALE, Variation.HOSTNAME, Variation.TIME, Variation.DIRORDER)


def parse(value: str) -> frozenset[Variation]:
    """``--vary``'s value: empty for all of them, else names separated by commas."""
    if not value.strip():
        return ALL
    chosen = set()
    for name in value.split(","):
        name = name.strip().lower()
        try:
            chosen.add(Variation(name))
        except ValueError:
            raise UsageError(
                f"--vary: unknown variation {printable(name, quote=True)} "
                f"(choose from {', '.join(Variation)})"
            ) from None
    return frozenset(chosen)


def names(vs: Iterable[Variation]) -> str:
    """``tz, locale, ...`` in the canonical order."""
    return ", ".join(v.value for v in Variation if v in set(vs))


def varied_procs(n: int) -> int:
    """The processor count a varied round gives the build instead of ``n``."""
    return 1 if n > 1 else 2


@dataclass(frozen=True)
class Applied:
    """What one target applies of the variations asked for (from vary-setup)."""

    variations: frozenset[Variation]
    #: the asked-for variations this target cannot apply, and why
    refused: tuple[tuple[Variation, str], ...] = ()
    locale: str = "fr_CH.UTF-8"
    faketime_lib: str = ""
    disorderfs: str = ""
    fuse_libs: str = ""


def parse_setup(text: str, wanted: frozenset[Variation]) -> Applied:
    """vary-setup's lines (``ok NAME [VALUE...]`` / ``no NAME REASON``) for ``wanted``."""
    seen: dict[Variation, list[str]] = {}
    refused: list[tuple[Variation, str]] = []
    for line in text.splitlines():
        verdict, _, rest = line.partition(" ")
        name, _, value = rest.partition(" ")
        try:
            v = Variation(name)
        except ValueError:
            continue
        if v not in wanted:
            continue
        if verdict == "ok":
            seen[v] = value.split()
        elif verdict == "no":
            refused.append((v, value or "no reason given"))
    for v in sorted(wanted & set(CHECKED)):
        if v not in seen and all(r[0] != v for r in refused):
            refused.append((v, "vary-setup said nothing about it"))
    ok = wanted - {v for v, _ in refused}
    locale = seen.get(Variation.LOCALE, ["fr_CH.UTF-8"])
    faketime = seen.get(Variation.TIME, [""])
    disorder = seen.get(Variation.DIRORDER, ["", ""])
    return Applied(
        variations=frozenset(ok),
        refused=tuple(refused),
        locale=locale[0] if locale else "C.UTF-8",
        faketime_lib=faketime[0] if faketime else "",
        disorderfs=disorder[0] if disorder else "",
        fuse_libs=disorder[1] if len(disorder) > 1 else "",
    )


def setup(target: Target, wanted: frozenset[Variation]) -> Applied:
    """Check on ``target`` which of ``wanted`` apply and fetch their tools."""
    checked = [v.value for v in CHECKED if v in wanted]
    if not checked:
        return Applied(frozenset(wanted))
    res = target.run(
        ["bash", "-s", TOOLS, *checked],
        user="root",
        stdin=(target_bin() / "vary-setup").read_bytes(),
        capture=True,
        network=True,
        check=False,
    )
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip()
        raise TargetError(f"vary-setup failed with exit status {res.returncode}: {err[-2000:]}")
    applied = parse_setup(res.stdout.decode("utf-8", "replace"), wanted)
    for v, why in applied.refused:
        log.warn(f"--vary: {v.value} cannot be varied on this {target.name} target: "
                 f"{printable(why)}")  # fmt: skip
    return applied


def script_params(params: ScriptParams, applied: Applied) -> ScriptParams:
    """The build script's parameters with the applied variations."""
    vs = applied.variations
    changes: dict[str, object] = {}
    if Variation.LOCALE in vs:
        changes["locale"] = applied.locale
    if Variation.UMASK in vs:
        changes["umask"] = UMASK
    if Variation.PROCS in vs:
        changes["num_procs"] = varied_procs(params.num_procs)
    return replace(params, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Command:
    """How a varied build script runs: ``argv`` as root with ``env``."""

    argv: list[str]
    env: dict[str, str]


def command(target: Target, applied: Applied, personality: str, num_procs: int) -> Command:
    """The root command (build script on its stdin) that runs the build with
    ``applied``'s variations; ``num_procs`` is the unvaried ``-j``."""
    vs = applied.variations
    user = target.config.user
    user_env = target.user_env(user)
    if Variation.TZ in vs:
        user_env["TZ"] = TZ
    if Variation.LOCALE in vs and applied.locale.startswith("fr_CH"):
        user_env["LANGUAGE"] = "fr_CH:fr"
    if Variation.TIME in vs:
        user_env["LD_PRELOAD"] = applied.faketime_lib
        user_env["FAKETIME"] = FAKETIME
        # faking the monotonic clock hangs some programs; the build's dates
        # come from the real-time clock
        user_env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    env = {
        "GITIAN_VARY_USER": user,
        "GITIAN_VARY_HOME": target.config.user_home,
        "GITIAN_VARY_PERSONALITY": personality,
    }
    namespaces = []
    if Variation.HOSTNAME in vs:
        env |= {"GITIAN_VARY_HOSTNAME": HOSTNAME, "GITIAN_VARY_DOMAINNAME": DOMAINNAME}
        namespaces.append("--uts")
    if Variation.PATH in vs:
        env["GITIAN_VARY_PATH"] = f"{PATH_ROOT}/{user}"
    if Variation.DIRORDER in vs:
        env |= {"GITIAN_VARY_DISORDERFS": applied.disorderfs, "GITIAN_VARY_LIBS": applied.fuse_libs}
        namespaces += ["--mount", "--propagation", "private"]
    if Variation.PROCS in vs and varied_procs(num_procs) == 1:
        env["GITIAN_VARY_CPUS"] = "1"
    script = (target_bin() / "vary-build").read_text()
    argv = ["unshare", *namespaces, "--"] if namespaces else []
    argv += ["bash", "-c", script, "vary-build", *(f"{k}={v}" for k, v in user_env.items())]
    return Command(argv, env)

"""Making a Debian/Ubuntu root file system with tools a current Debian ships.

Shared by every backend's make-base-vm: the package set of SPEC §7, the build
user, and the apt mirror: ``--mirror``, else an apt-cacher-ng named by
``MIRROR_HOST`` (as the classic tool), else the host's own apt sources, else
the bootstrap tool's default.  No mirror host name is written in this code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gitian import run as host
from gitian.targets.base import PATH

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_D = Path("/etc/apt/sources.list.d")

# SPEC §7: every base gets these; the locale package depends on the distro.
BASE_PACKAGES = (
    "pciutils",
    "build-essential",
    "git",
    "subversion",
    "wget",
    "lsb-release",
    "sudo",
    "python3",  # for canon-zip, which gbuild puts in every target's PATH
)
LOCALE_PACKAGE = {"ubuntu": "language-pack-en", "debian": "locales-all"}
#: upgrade-system.sh leaves this on a target (or base) it has upgraded
UPGRADE_MARKER = "/var/cache/gitian/initial-upgrade"


def base_packages(distro: str) -> list[str]:
    return [*BASE_PACKAGES, LOCALE_PACKAGE.get(distro, "locales-all")]


def components(distro: str) -> list[str]:
    """The archive components a base uses."""
    return ["main", "universe"] if distro == "ubuntu" else ["main"]


def fixup_env(
    *,
    distro: str,
    suite: str,
    user: str,
    container: bool,
    mirror: str | None = None,
    mirror_host: str | None = None,
) -> dict[str, str]:
    """What ``target-bin/bootstrap-fixup`` reads (see its header), for every
    way it is run: in a new directory base, a VM image, a Docker build step, a
    Vagrant provisioner, and in a clean target pointed at ``MIRROR_HOST``."""
    env = {
        "GITIAN_USER": user,
        "GITIAN_CONTAINER": "1" if container else "0",
        "GITIAN_SUITE": suite,
        "GITIAN_COMPONENTS": " ".join(components(distro)),
    }
    if mirror:
        env["GITIAN_MIRROR"] = mirror
    if mirror_host:
        env["MIRROR_HOST"] = mirror_host
    return env


def chroot_run(
    root: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    capture: bool = False,
) -> bytes:
    """Run ``argv`` as root in ``root`` with a private /proc (mount and pid
    namespaces of its own, so nothing stays mounted on the host)."""
    full = {
        "PATH": PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
    }
    if env:
        full.update(env)
    cmd = [
        "unshare", "--mount", "--pid", "--fork", "--kill-child",
        f"--mount-proc={root / 'proc'}",
        "--",
        "chroot", os.fspath(root),
        "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in full.items()),
        *argv,
    ]  # fmt: skip
    res = host.run(cmd, input=input, capture=capture)
    return res.stdout or b""


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def host_apt_sources(
    sources_list: Path = APT_SOURCES, sources_d: Path = APT_SOURCES_D
) -> list[AptSource]:
    """The host's ``deb`` sources, from one-line ``.list`` and deb822 ``.sources`` files."""
    out: list[AptSource] = []
    files: list[Path] = []
    if sources_list.is_file():
        files.append(sources_list)
    if sources_d.is_dir():
        files.extend(sorted(p for p in sources_d.iterdir() if p.suffix in (".list", ".sources")))
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            out.extend(_parse_deb822(text))
        else:
            out.extend(_parse_one_line(text))
    return out


def _parse_one_line(text: str) -> list[AptSource]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            out.append(AptSource(words[0], (words[1],), tuple(words[2:])))
    return out


def _parse_deb822(text: str) -> list[AptSource]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
                continue
            k, sep, v = line.partition(":")
            if sep:
                key = k.strip().lower()
                fields[key] = v.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(
                AptSource(
                    uri,
                    tuple(fields.get("suites", "").split()),
                    tuple(fields.get("components", "").split()),
                )
            )
    return out


def _distro_of(uri: str) -> str | None:
    path = uri.rstrip("/").rsplit("/", 1)[-1]
    if path in ("debian", "ubuntu"):
        return path
    return None


def host_mirror(distro: str) -> str | None:
    """The host's archive URI for ``distro`` (not its security archive), if any."""
    for src in host_apt_sources():
        if _distro_of(src.uri) != distro:
            continue
        if any(s.endswith("-security") or "/updates" in s for s in src.suites):
            continue
        if src.uri.startswith(("http://", "https://")):
            return src.uri.rstrip("/")
    return None


def choose_mirror(distro: str, *, explicit: str | None, mirror_host: str | None) -> str | None:
    """The mirror a base is bootstrapped from, or None for the bootstrap tool's default.

    With ``MIRROR_HOST`` the upstream archive is reached through that
    apt-cacher-ng (``http://MIRROR_HOST:3142/<upstream host>/<path>``), as the
    classic tool did.
    """
    if explicit:
        return explicit.rstrip("/")
    upstream = host_mirror(distro)
    if mirror_host:
        if upstream is None:
            return None
        rest = re.sub(r"^[a-z]+://", "", upstream)
        return f"http://{mirror_host}:3142/{rest}"
    return upstream


def bootstrap_tool() -> str | None:
    """mmdebstrap when installed (faster, no root needed for tarballs), else debootstrap."""
    for tool in ("mmdebstrap", "debootstrap"):
        if host.which(tool):
            return tool
    return None

"""The bubblewrap backend: the fastest clean target (``USE_BWRAP=1``).

The base is a directory (see :mod:`gitian.targets.rootfs`); the clean target
is an overlay mount of it, so making one costs a ``mount``.  Every command is
its own ``bwrap`` sandbox on that mount, with its own pid, ipc and uts
namespaces and no network unless the caller asks for it (the apt steps).
Files written by one command stay for the next, as on a real machine, until
``reset()`` throws the upper layer away.

Run as root here.  As root, bwrap is used without a user namespace (``--uid``
there would leave files unmapped), and privileges are dropped inside with
``setpriv``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from gitian.errors import TargetError
from gitian.run import is_root, which
from gitian.targets import rootfs
from gitian.targets.base import TargetConfig


class BwrapTarget(rootfs.OverlayTarget):
    name = "bwrap"

    @classmethod
    def unavailable_reason(
        cls, *, for_base: bool = False, config: TargetConfig | None = None
    ) -> str | None:
        if which("bwrap") is None:
            return "bubblewrap is not installed (apt-get install bubblewrap)"
        if which("setpriv") is None:
            return "setpriv is missing (apt-get install util-linux)"
        if not is_root():
            return (
                "the bwrap backend mounts an overlay for each clean target and needs root "
                "here (run as root)"
            )
        if for_base:
            return rootfs.missing_for_base_host()
        return rootfs.missing_for_targets()

    def prefix(
        self, *, user: str, env: Mapping[str, str], home: str, network: bool, interactive: bool
    ) -> list[str]:
        cmd = [
            "bwrap",
            "--bind", os.fspath(self.rootfs), "/",
            "--proc", "/proc",
            "--dev", "/dev",
            "--perms", "1777", "--tmpfs", "/dev/shm",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts", "--hostname", "gitian",
            "--die-with-parent",
            # The host's .deb cache, shared by all builds (apt keeps its downloads).
            "--bind", os.fspath(self.config.home.package_cache), "/var/cache/apt/archives",
        ]  # fmt: skip
        if user == "root":
            # FUSE for root only: gbuild --vary mounts disorderfs over the build
            # directory (root on the target is the host's root anyway).
            cmd += ["--dev-bind-try", "/dev/fuse", "/dev/fuse"]
        if network:
            cmd += ["--share-net"]
            resolv = Path("/etc/resolv.conf")
            if resolv.exists():
                cmd += ["--ro-bind", os.fspath(resolv.resolve()), "/etc/resolv.conf"]
        else:
            cmd += ["--unshare-net"]
        if not interactive:
            # Without a terminal to share, a new session stops TIOCSTI games.
            cmd += ["--new-session"]
        cmd += ["--clearenv"]
        for k, v in env.items():
            cmd += ["--setenv", k, v]
        if not Path(self.rootfs, home.lstrip("/")).is_dir():
            raise TargetError(f"the home directory {home} of {user} is missing on the target")
        cmd += ["--chdir", home, "--"]
        cmd += rootfs.drop_privileges(user)
        return cmd

"""The Docker backend (``USE_DOCKER=1``), and Podman through the same code.

The command-line client is ``docker`` or, with ``GITIAN_CONTAINER_CLI=podman``,
``podman``; the Docker client finds its daemon through ``DOCKER_HOST`` as
usual.  The base is the image ``base-<suite>-<arch>`` (``base-<digest>-<arch>``
when pinned by digest):

* with no registry (the default): the same directory base as the LXC and
  bubblewrap backends (a local Debian bootstrap, ``bootstrap-fixup`` for a
  container, one upgrade so the marker ``/var/cache/gitian/initial-upgrade``
  is there), streamed as a tar into ``docker import``;
* with ``--docker-image-hash`` / the descriptor's ``docker_image_digests``:
  ``docker build`` from ``<distro>@sha256:<digest>`` (needs a registry), the
  same two scripts run as build steps.

A clean target is a new container from that image: ``start`` is ``docker run
-d`` (privileged only with ``GITIAN_ALLOW_PRIVILEGED``), commands are ``docker
exec -i -u USER -w HOME -e ...``, copies are tar streams through that prefix
(so files belong to the user on the target and to the invoking user on the
host), and ``stop`` stops and removes the container.  The host's package cache
is bound at ``/var/cache/apt/archives``, as with the other container backends.

The container is named ``gitian-target-<8 hex digits>`` after the gitian home,
so homes can build side by side on one daemon; it is the classic tool's
``gitian-target`` otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from gitian import bootstrap, log
from gitian.errors import TargetError, ToolMissingError, UsageError
from gitian.home import Home, target_bin
from gitian.run import PROVIDERS, pipeline, run, which
from gitian.targets import rootfs
from gitian.targets.base import BaseOptions, PrefixTarget, TargetConfig

CLIS = ("docker", "podman")
#: Podman here cannot raise rlimits (no CAP_SYS_RESOURCE): give it fixed ones.
PODMAN_ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")
CONTAINER_PREFIX = "gitian-target"
HOME_LABEL = "org.gitian.home"
#: installed-packages layers are images gitian-layer-<8 hex digits of the home>:<key>
LAYER_PREFIX = "gitian-layer"
LAYER_LABEL = "org.gitian.layer"
HOSTNAME = "gitian"
# PID 1 of a target: sleeps, and exits at once on SIGTERM (a plain `sleep` as
# PID 1 ignores it, and every `docker stop` would wait out its timeout).
KEEPALIVE = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
DIGEST = re.compile(r"(?:sha256:)?([0-9a-f]{64})\Z")
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]*\Z")
APT_ARCHIVES = "/var/cache/apt/archives"

CLEAN_SCRIPT = """\
#!/bin/sh
# gitian-py: last docker build step; the host's package cache replaces the archives.
apt-get clean
rm -rf /var/lib/apt/lists/* /tmp/gitian-setup
"""


def image_name(suite: str, arch: str) -> str:
    """The base image's name: the classic ``base-<suite>-<arch>``.

    gbuild puts a descriptor's ``docker_image_digests`` entry (``sha256:<hex>``)
    where the suite goes; the image is then ``base-<hex>-<arch>``, the name
    ``make-base-vm --docker-image-hash <hex>`` gives it.
    """
    m = DIGEST.match(suite)
    return f"base-{m.group(1) if m else suite}-{arch}"


def container_name(home: Home) -> str:
    """``gitian-target-`` and 8 hex digits of the home's path."""
    digest = hashlib.sha256(os.fsencode(home.root)).hexdigest()[:8]
    return f"{CONTAINER_PREFIX}-{digest}"


def normalize_digest(value: str) -> str:
    """The 64 hex digits of ``[sha256:]<hex>``; UsageError otherwise."""
    m = DIGEST.match(value.strip().lower())
    if not m:
        raise UsageError(
            f"--docker-image-hash must be a sha256 digest (64 hex digits), not {value!r}"
        )
    return m.group(1)


def dockerfile(from_ref: str) -> str:
    """The Dockerfile that turns ``from_ref`` into a base.

    Every step is exec form (no shell parses anything we wrote); the values
    come in as build arguments, which the steps see as environment variables.
    """
    lines = [
        "# gitian-py base image (make-base-vm --docker)",
        f"FROM {from_ref}",
        "ARG GITIAN_USER",
        "ARG GITIAN_CONTAINER",
        "ARG GITIAN_SUITE",
        "ARG GITIAN_COMPONENTS",
        "ARG GITIAN_MIRROR",
        "ARG MIRROR_HOST",
        "ARG GITIAN_PACKAGES",
        "COPY bootstrap-fixup upgrade-system.sh install-packages clean-up /tmp/gitian-setup/",
        'RUN ["/bin/sh", "/tmp/gitian-setup/bootstrap-fixup"]',
        'RUN ["/bin/sh", "/tmp/gitian-setup/install-packages"]',
        'RUN ["/bin/bash", "/tmp/gitian-setup/upgrade-system.sh"]',
        'RUN ["/bin/sh", "/tmp/gitian-setup/clean-up"]',
        f"CMD {json.dumps(KEEPALIVE)}",
    ]
    return "\n".join(lines) + "\n"


def import_changes() -> list[str]:
    """``--change`` arguments for ``docker import`` of a directory base."""
    return ["--change", f"CMD {json.dumps(KEEPALIVE)}"]


@dataclass(frozen=True)
class DockerConfig(TargetConfig):
    """The Docker backend's own settings."""

    container_cli: str = "docker"  # GITIAN_CONTAINER_CLI: docker | podman
    allow_privileged: bool = False  # GITIAN_ALLOW_PRIVILEGED
    docker_host: str | None = None  # DOCKER_HOST, named when the daemon cannot be reached


class DockerTarget(PrefixTarget):
    """A container on a local Docker daemon (or Podman)."""

    name = "docker"
    config_type: ClassVar[type[TargetConfig]] = DockerConfig
    config: DockerConfig
    binds_package_cache: ClassVar[bool] = True

    def __init__(self, config: TargetConfig) -> None:
        super().__init__(config)
        if self.config.container_cli not in CLIS:
            raise UsageError(
                f"GITIAN_CONTAINER_CLI must be docker or podman, not {self.config.container_cli!r}"
            )
        self.cli = self.config.container_cli
        self._layer_image: str | None = None

    # -- host checks -------------------------------------------------------
    @classmethod
    def unavailable_reason(
        cls, *, for_base: bool = False, config: TargetConfig | None = None
    ) -> str | None:
        cli, docker_host = "docker", None
        if isinstance(config, DockerConfig):
            cli, docker_host = config.container_cli, config.docker_host
        if cli not in CLIS:
            return f"GITIAN_CONTAINER_CLI must be docker or podman, not {cli!r}"
        if which(cli) is None:
            return f"{cli} is not installed (apt-get install {PROVIDERS[cli]})"
        reason = daemon_unreachable(cli, docker_host)
        if reason:
            return reason
        if for_base:
            return rootfs.missing_for_base_host()
        return None

    # -- names -------------------------------------------------------------
    @property
    def base_image(self) -> str:
        return image_name(self.config.suite, self.config.image_arch)

    @property
    def image(self) -> str:
        """What a clean target is made from: the base, or the layer's image."""
        return self._layer_image or self.base_image

    @property
    def container(self) -> str:
        return container_name(self.config.home)

    def _cli(self, *args: str) -> list[str]:
        return [self.cli, *args]

    # -- make-base-vm ------------------------------------------------------
    def make_base(self, options: BaseOptions) -> None:
        if options.docker_image_hash:
            self._make_base_from_digest(options, normalize_digest(options.docker_image_hash))
        else:
            self._make_base_from_bootstrap(options)

    def _make_base_from_bootstrap(self, options: BaseOptions) -> None:
        home = self.config.home
        spec = rootfs.spec_for(options, mirror_host=self.config.mirror_host)
        reason = rootfs.missing_for_base_host()
        if reason:
            raise ToolMissingError(f"cannot make a base: {reason}")
        tool = bootstrap.bootstrap_tool()
        assert tool is not None
        tag = image_name(spec.suite, spec.arch)
        old = self._image_id(tag)
        home.root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{tag}.docker.", dir=home.root))
        root = work / "root"
        try:
            rootfs.check_path(root, "base")
            with log.step(f"Bootstrapping {spec.distro} {spec.suite} {spec.arch} with {tool}"):
                log.info(f"mirror: {spec.mirror or 'the bootstrap tool default'}")
                run(rootfs.bootstrap_argv(spec, root, tool))
            rootfs.fixup(root, spec, container=True)
            rootfs.upgrade(root)
            rootfs.harvest_debs(root, home.package_cache)
            with log.step(f"Importing it as the {self.cli} image {tag}"):
                tar = ["tar", "-C", os.fspath(root), "--numeric-owner", "-cf", "-", "."]
                imp = self._cli("import", *import_changes(), "-", tag)
                pipeline(tar, imp)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._after_build(tag, old)

    def _make_base_from_digest(self, options: BaseOptions, digest: str) -> None:
        spec = rootfs.spec_for(options, mirror_host=self.config.mirror_host)
        tag = image_name(digest, spec.arch)
        from_ref = f"{spec.distro}@sha256:{digest}"
        old = self._image_id(tag)
        with tempfile.TemporaryDirectory(prefix="gitian-docker-build.") as ctx:
            with log.step(f"Building the {self.cli} image {tag} from {from_ref}"):
                run(self.build_argv(spec, from_ref, tag, Path(ctx)))
        self._after_build(tag, old)

    def build_argv(
        self, spec: rootfs.BaseSpec, from_ref: str, tag: str, context: Path
    ) -> list[str]:
        """Fill ``context`` (an empty directory) and return the build command line."""
        for pkg in spec.packages:
            if not PACKAGE.match(pkg):
                raise UsageError(f"bad package name {pkg!r}")
        write_context(context, from_ref)
        # bootstrap-fixup points the image's own sources through the cacher.
        args = spec.fixup_env(container=True, mirror_host=self.config.mirror_host)
        args["GITIAN_PACKAGES"] = " ".join(spec.packages)
        argv = self._cli("build")
        if self.cli == "podman":
            argv += PODMAN_ULIMITS
        for k, v in args.items():
            argv += ["--build-arg", f"{k}={v}"]
        argv += ["--tag", tag, "--file", os.fspath(context / "Dockerfile"), os.fspath(context)]
        return argv

    def _after_build(self, tag: str, old: str | None) -> None:
        new = self._image_id(tag)
        if new is None:
            raise TargetError(f"{self.cli} made no image {tag}")
        if old and old != new:
            # The previous base would stay as a nameless image; drop it if unused.
            run(self._cli("image", "rm", old), check=False, capture=True)
        log.info(f"base image {tag}: {new}")

    def _image_id(self, ref: str) -> str | None:
        res = run(
            self._cli("image", "inspect", "--format", "{{.Id}}", ref), check=False, capture=True
        )
        if res.returncode != 0:
            return None
        return (res.stdout or b"").decode().strip() or None

    def has_base(self) -> bool:
        return which(self.cli) is not None and self._image_id(self.base_image) is not None

    # -- installed-packages layers: committed images ------------------------------------
    def base_identity(self) -> dict[str, str] | None:
        image = self._image_id(self.base_image) if which(self.cli) else None
        return None if image is None else {"kind": "image", "image": image}

    def from_layer(self, layer: Path | None) -> None:
        image = None if layer is None else _layer_image(layer)
        if image is not None and self._image_id(image) is None:
            raise TargetError(f"{self.cli} has no image {image} (pruned?)")
        self._layer_image = image

    def keep_layer(self, dest: Path, name: str) -> int:
        """``commit`` the container, labelled with the key; the image id goes
        into ``dest/image`` (the tag is for people: a new layer with the same
        key moves it, the id stays)."""
        tag = f"{LAYER_PREFIX}-{self.container.rpartition('-')[2]}:{name}"
        run(self._cli("commit", "--change", f"LABEL {LAYER_LABEL}={name}", self.container, tag),
            capture=True)  # fmt: skip
        image = self._image_id(tag)
        if image is None:
            raise TargetError(f"{self.cli} commit made no image {tag}")
        (dest / "image").write_text(image + "\n")
        self.stop()
        return max(0, self._image_size(image) - self._image_size(self.base_image))

    def drop_layer(self, layer: Path) -> None:
        try:
            image = _layer_image(layer)
        except TargetError:
            return  # nothing was committed
        res = run(self._cli("image", "rm", image), check=False, capture=True)
        err = (res.stderr or b"").decode("utf-8", "replace").strip()
        if res.returncode != 0 and not re.search(r"no such image|image not known", err, re.I):
            raise TargetError(f"{self.cli} image rm {image}: {err[-500:]}")

    def _image_size(self, ref: str) -> int:
        res = run(
            self._cli("image", "inspect", "--format", "{{.Size}}", ref), check=False, capture=True
        )
        try:
            return int((res.stdout or b"0").decode().strip())
        except ValueError:
            return 0

    # -- lifecycle ---------------------------------------------------------
    def _make_base_hint(self) -> str:
        c = self.config
        env = "GITIAN_CONTAINER_CLI=podman " if self.cli == "podman" else ""
        m = DIGEST.match(c.suite)
        if m:
            return (
                f"make it with: {env}make-base-vm --docker --distro {c.distro} "
                f"--docker-image-hash {m.group(1)} --arch {c.image_arch} (needs a registry)"
            )
        return (
            f"make it with: {env}make-base-vm --docker --distro {c.distro} "
            f"--suite {c.suite} --arch {c.image_arch}"
        )

    def reset(self) -> None:
        """A new container is a clean target: remove any old one, check the image."""
        self.stop()
        if self._image_id(self.image) is None:
            raise TargetError(f"no {self.cli} image {self.image}", hint=self._make_base_hint())

    def start(self) -> None:
        argv = self.run_argv()  # checks paths before anything starts
        (self.config.home.package_cache / "partial").mkdir(parents=True, exist_ok=True)
        res = run(argv, check=False, capture=True)
        if res.returncode != 0 and self._container_state() is not None:
            # A container of an earlier start-target is in the way.
            self.stop()
            res = run(argv, check=False, capture=True)
        if res.returncode != 0:
            self.stop()
            if self._image_id(self.image) is None:
                raise TargetError(f"no {self.cli} image {self.image}", hint=self._make_base_hint())
            msg = (res.stderr or b"").decode("utf-8", "replace").strip()
            raise TargetError(
                f"{self.cli} could not start {self.container}: {msg[-2000:]}",
                hint="rerun with GITIAN_DEBUG=1 to see the command",
            )

    def run_argv(self) -> list[str]:
        """The ``docker run`` command line that starts the target."""
        c = self.config
        cache = c.home.package_cache
        rootfs.check_path(cache, "package cache")
        argv = self._cli(
            "run",
            "--detach",
            "--name", self.container,
            "--label", f"{HOME_LABEL}={c.home.root}",
            "--hostname", HOSTNAME,
            "--volume", f"{cache}:{APT_ARCHIVES}",
        )  # fmt: skip
        if c.allow_privileged:
            argv.append("--privileged")
        if self.cli == "podman":
            argv += PODMAN_ULIMITS
        argv += [self.image, *KEEPALIVE]
        return argv

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            res = run(self._cli("exec", self.container, "true"), check=False, capture=True)
            if res.returncode == 0:
                return
            if time.monotonic() > deadline or self._container_state() != "running":
                msg = (res.stderr or b"").decode("utf-8", "replace").strip()
                raise TargetError(f"the {self.cli} target {self.container} is not up: {msg}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop and remove the container; nothing to do when there is none."""
        res = run(self._cli("stop", "--time", "10", self.container), check=False, capture=True)
        if res.returncode != 0 and _no_such_container(res.stderr):
            return
        res = run(self._cli("rm", "--force", self.container), check=False, capture=True)
        if res.returncode != 0 and not _no_such_container(res.stderr):
            msg = (res.stderr or b"").decode("utf-8", "replace").strip()
            raise TargetError(f"{self.cli} could not remove {self.container}: {msg}")

    def _container_state(self) -> str | None:
        """``running``, ``exited``, ... or None when there is no such container."""
        res = run(
            self._cli("container", "inspect", "--format", "{{.State.Status}}", self.container),
            check=False,
            capture=True,
        )
        if res.returncode != 0:
            return None
        return (res.stdout or b"").decode().strip() or "unknown"

    # -- commands ----------------------------------------------------------
    def prefix(
        self, *, user: str, env: Mapping[str, str], home: str, network: bool, interactive: bool
    ) -> list[str]:
        # The container keeps its network the whole time (apt needs it and a
        # running container's network cannot be cut per command).
        argv = self._cli("exec")
        if interactive:
            argv.append("-i")
        argv += ["-u", user, "-w", home]
        for k, v in env.items():
            argv += ["-e", f"{k}={v}"]
        argv.append(self.container)
        return argv


def _layer_image(layer: Path) -> str:
    """The image id a layer directory names."""
    try:
        image = (layer / "image").read_text().strip()
    except OSError:
        raise TargetError(f"the layer {layer.name} names no image") from None
    if not DIGEST.match(image):
        raise TargetError(f"the layer {layer.name} names no image id: {image[:80]!r}")
    return image


def _no_such_container(stderr: bytes | None) -> bool:
    # docker: "No such container: NAME"; podman: "...: no such container"
    return b"no such container" in (stderr or b"").lower()


def write_context(context: Path, from_ref: str) -> None:
    """The build context: the Dockerfile and the scripts its steps run."""
    (context / "Dockerfile").write_text(dockerfile(from_ref))
    for name in ("bootstrap-fixup", "install-packages", "upgrade-system.sh"):
        shutil.copyfile(target_bin() / name, context / name)
    (context / "clean-up").write_text(CLEAN_SCRIPT)


def daemon_unreachable(cli: str, docker_host: str | None = None) -> str | None:
    """None when ``cli`` can talk to its engine, else one line saying why."""
    try:
        res = run(
            [cli, "version", "--format", "{{.Server.Version}}"],
            check=False,
            capture=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return f"{cli}: no answer from the engine within 20 s"
    if res.returncode == 0 and (res.stdout or b"").strip():
        return None
    err = (res.stderr or b"").decode("utf-8", "replace").strip()
    if cli == "podman":
        return f"podman does not work here: {err.splitlines()[-1] if err else 'no version'}"
    m = re.search(r"daemon at (\S+?)\.? ", err + " ")
    where = m.group(1) if m else docker_host or "unix:///var/run/docker.sock"
    return f"docker: cannot reach the daemon at {where} (start dockerd, or set DOCKER_HOST)"

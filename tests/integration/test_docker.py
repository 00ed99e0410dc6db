"""The Docker backend on a private dockerd, and Podman by GITIAN_CONTAINER_CLI.

Root and the Debian archive are needed; no registry is.  The base is made by
``make-base-vm --docker`` from a local bootstrap; the example is built end to
end with gbuild and its out_manifest compared with a bubblewrap build's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from gitian.errors import TargetError
from gitian.home import Home
from gitian.targets import make_target
from gitian.targets.base import TargetConfig
from gitian.targets.docker import DockerConfig, DockerTarget, container_name, image_name
from gitian.targets.rootfs import BaseSpec
from tests.integration.conftest import (
    ARCH,
    DISTRO,
    SUITE,
    BaseHome,
    check_base_contents,
    check_copies,
    check_grab_packages,
    example_with,
    interrupt_the_package_step,
    layer_dirs,
    snapshot,
)
from tests.integration.conftest_docker import dockerd, leftover_containers, podman_env

pytestmark = [pytest.mark.integration, pytest.mark.backend("docker")]
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "descriptors" / "example.yml"
__all__ = ["dockerd", "podman_env"]  # fixtures, imported for pytest

Tool = Callable[..., subprocess.CompletedProcess[bytes]]


def _tool_runner(home: Home, env: dict[str, str]) -> Tool:
    full = {**os.environ, **env, "DISTRO": DISTRO, "USE_DOCKER": "1"}
    for var in ("USE_LXC", "USE_VBOX", "USE_BWRAP"):
        full.pop(var, None)

    def tool(
        name: str, *args: str, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-c", f"from gitian.cli.targettools import {name}; {name}()", *args],
            input=input, capture_output=True, env=full, cwd=home.root, check=False,
        )  # fmt: skip

    return tool


def _make_base(home: Home, env: dict[str, str]) -> None:
    home.root.mkdir(parents=True, exist_ok=True)
    r = _tool_runner(home, env)(
        "make_base_vm", "--docker", "--distro", DISTRO, "--suite", SUITE, "--arch", ARCH
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-4000:]
    # The bootstrap's temporary directory is gone.
    assert [p.name for p in home.root.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="session")
def docker_home(
    dockerd: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Home, dict[str, str]]]:
    """A home with ``base-bookworm-amd64`` made by make-base-vm --docker (no registry)."""
    home = Home(tmp_path_factory.mktemp("gitian-docker"))
    env = {**dockerd, "GITIAN_CONTAINER_CLI": "docker"}
    _make_base(home, env)
    yield home, env
    _target(home, env).stop()


def _target(home: Home, env: dict[str, str]) -> DockerTarget:
    cli = env.get("GITIAN_CONTAINER_CLI", "docker")
    cfg = DockerConfig(home=home, suite=SUITE, arch=ARCH, distro=DISTRO, container_cli=cli)
    t = make_target("docker", cfg)
    assert isinstance(t, DockerTarget)
    return t


@pytest.fixture
def target(docker_home: tuple[Home, dict[str, str]]) -> Iterator[DockerTarget]:
    home, env = docker_home
    t = _target(home, env)
    with t.session():
        yield t
    assert leftover_containers(env) == []


def _containers(env: dict[str, str], cli: str = "docker") -> list[str]:
    return leftover_containers(env, cli)


def test_commands_users_stdin_status(target: DockerTarget) -> None:
    r = target.run(["sh", "-c", 'id -un; echo "$HOME"; pwd; echo "$FOO"'], env={"FOO": "a b"},
                   capture=True)  # fmt: skip
    assert r.stdout.decode().split("\n")[:4] == ["debian", "/home/debian", "/home/debian", "a b"]
    assert target.run(["id", "-u"], user="root", capture=True).stdout == b"0\n"
    assert target.run(["pwd"], user="root", capture=True).stdout == b"/root\n"
    assert target.run(["cat"], stdin=b"through stdin\n", capture=True).stdout == b"through stdin\n"
    assert target.run(["sh", "-c", "exit 42"], check=False).returncode == 42
    r = target.run(["env"], capture=True)
    names = {line.split("=", 1)[0] for line in r.stdout.decode().splitlines()}
    # docker exec always adds HOSTNAME; nothing else of the host leaks in.
    assert names <= {"HOME", "USER", "LOGNAME", "PATH", "LANG", "HOSTNAME", "PWD", "SHLVL", "_"}
    assert target.run(["hostname"], capture=True).stdout == b"gitian\n"


def test_copies_with_ownership(target: DockerTarget, tmp_path: Path) -> None:
    check_copies(target, tmp_path)


def test_base_is_ready(target: DockerTarget) -> None:
    check_base_contents(target)
    # SPEC §7 packages are in, and the image carries no .debs of its own.
    target.run(["dpkg", "-s", "sudo", "build-essential", "git", "locales-all"], capture=True)


def test_grab_packages_through_the_bound_cache(
    target: DockerTarget, docker_home: tuple[Home, dict[str, str]]
) -> None:
    check_grab_packages(target, docker_home[0])


def test_each_target_is_clean_and_stop_removes_it(
    docker_home: tuple[Home, dict[str, str]],
) -> None:
    home, env = docker_home
    t = _target(home, env)
    with t.session():
        t.run(["touch", "left-over"])
        assert _containers(env) != []
    assert _containers(env) == []
    t.stop()  # idempotent
    with t.session():
        assert t.run(["test", "-e", "left-over"], check=False).returncode == 1
    assert _containers(env) == []


def test_privileged_only_when_allowed(docker_home: tuple[Home, dict[str, str]]) -> None:
    home, env = docker_home
    fmt = "{{.HostConfig.Privileged}}"
    plain = make_target("docker", TargetConfig(home=home, suite=SUITE, arch=ARCH, distro=DISTRO))
    assert isinstance(plain, DockerTarget)
    with plain.session():
        r = subprocess.run(["docker", "container", "inspect", "--format", fmt, plain.container],
                           capture_output=True, text=True, check=True)  # fmt: skip
        assert r.stdout.strip() == "false"
    cfg = DockerConfig(home=home, suite=SUITE, arch=ARCH, distro=DISTRO, allow_privileged=True)
    priv = make_target("docker", cfg)
    assert isinstance(priv, DockerTarget)
    try:
        with priv.session():
            r = subprocess.run(["docker", "container", "inspect", "--format", fmt, priv.container],
                               capture_output=True, text=True, check=True)  # fmt: skip
            assert r.stdout.strip() == "true"
    except TargetError as e:
        # This machine (itself sandboxed) cannot grant a privileged container
        # every capability; what matters here is that we asked and cleaned up.
        assert "apply caps" in str(e), e
    assert _containers(env) == []


def test_libexec_tools(docker_home: tuple[Home, dict[str, str]], tmp_path: Path) -> None:
    home, env = docker_home
    tool = _tool_runner(home, env)
    assert tool("make_clean_vm", "--suite", SUITE, "--arch", ARCH).returncode == 0
    r = tool("start_target", "64", f"{SUITE}-{ARCH}")
    assert r.returncode == 0, r.stderr
    try:
        assert _containers(env) != []
        r = tool("on_target", "-e", "A=1 B=two", "sh", "-c", 'echo "$A $B"; cat; exit 5',
                 input=b"in\n")  # fmt: skip
        assert (r.returncode, r.stdout) == (5, b"1 two\nin\n"), r.stderr
        assert tool("on_target", "-u", "root", "id", "-un").stdout == b"root\n"
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "x").write_text("x")
        assert tool("copy_to_target", "-q", str(tmp_path / "d"), "build/").returncode == 0
        r = tool("on_target", "stat", "-c", "%U", "build/d/x")
        assert r.stdout == b"debian\n"
        r = tool("copy_from_target", "build/d", str(tmp_path / "back"))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "back" / "d" / "x").read_text() == "x"
        assert (tmp_path / "back" / "d" / "x").stat().st_uid == os.getuid()
    finally:
        r = tool("stop_target")
    assert r.returncode == 0, r.stderr
    assert _containers(env) == []


def test_unreachable_daemon_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock", "USE_DOCKER": "1"}
    r = subprocess.run(
        [sys.executable, "-c", "from gitian.cli.targettools import make_base_vm; make_base_vm()",
         "--docker", "--distro", DISTRO, "--suite", SUITE, "--workdir", str(tmp_path / "h")],
        capture_output=True, env=env, check=False,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert f"cannot reach the daemon at unix://{tmp_path}/none.sock".encode() in r.stderr
    assert not (tmp_path / "h").exists()


def test_dockerfile_path_builds_a_base(
    docker_home: tuple[Home, dict[str, str]], tmp_path: Path
) -> None:
    """The Dockerfile a --docker-image-hash base is built with, run for real.

    Only its FROM differs from the registry case: here it is the local base
    (a pinned registry image cannot be pulled on this machine).
    """
    home, env = docker_home
    t = _target(home, env)
    spec = BaseSpec(distro=DISTRO, suite=SUITE, arch=ARCH, mirror=None,
                    packages=("pciutils", "sudo", "hello"), user=DISTRO)  # fmt: skip
    tag = "gitian-test-dockerfile"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    argv = t.build_argv(spec, image_name(SUITE, ARCH), tag, ctx)
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    try:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        r = subprocess.run(
            ["docker", "run", "--rm", tag, "sh", "-c",
             "test -e /var/cache/gitian/initial-upgrade && id -un debian && hello "
             "&& ls /var/lib/apt/lists | wc -l"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[:3] == ["debian", "Hello,", "world!"]
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def _example_home(home: Home) -> None:
    script = ROOT / "descriptors" / "prepare-example"
    r = subprocess.run([sys.executable, os.fspath(script), os.fspath(home.root)],
                       capture_output=True, text=True, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr


def _gbuild_argv(home: Home, desc: Path = EXAMPLE) -> list[str]:
    return [sys.executable, "-c", "from gitian.cli.gbuild import main; main()",
            "--workdir", os.fspath(home.root), os.fspath(desc)]  # fmt: skip


def _gbuild(home: Home, env: dict[str, str], desc: Path = EXAMPLE) -> dict[str, object]:
    r = subprocess.run(_gbuild_argv(home, desc), capture_output=True, text=True, env=env,
                       check=False)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = yaml.safe_load((home.result / "gitian-example-res.yml").read_text())
    assert isinstance(res, list)  # an !!omap: (key, value) pairs
    return {**dict(res), "progress": r.stderr}


def _docker_env(env: dict[str, str]) -> dict[str, str]:
    full = {**os.environ, **env, "USE_DOCKER": "1"}
    full.pop("USE_LXC", None)
    full.pop("CI", None)
    return full


def _layer_images(env: dict[str, str]) -> dict[str, str]:
    """The installed-packages layer images: image id -> the key in its label."""
    r = subprocess.run(
        ["docker", "images", "--quiet", "--no-trunc", "--filter", "label=org.gitian.layer"],
        capture_output=True, text=True, env={**os.environ, **env}, check=True,
    )  # fmt: skip
    out = {}
    for image in r.stdout.split():
        label = subprocess.run(
            ["docker", "image", "inspect", "--format",
             '{{index .Config.Labels "org.gitian.layer"}}', image],
            capture_output=True, text=True, env={**os.environ, **env}, check=True,
        ).stdout.strip()  # fmt: skip
        out[image] = label
    return out


def test_gbuild_example_matches_bwrap(
    docker_home: tuple[Home, dict[str, str]], base_home: BaseHome
) -> None:
    home, env = docker_home
    _example_home(home)
    full = _docker_env(env)
    docker_res = _gbuild(home, full)
    assert _containers(env) == []
    # The package step was kept as a committed image, labelled with its key;
    # a rebuild starts from it and gives the same bytes.
    [layer] = layer_dirs(home)
    image = (home.var / "layers" / layer / "image").read_text().strip()
    assert _layer_images(env) == {image: layer}
    first = snapshot(home)
    again = _gbuild(home, full)
    assert f"Using the installed-packages layer {layer[:12]}" in str(again["progress"])
    assert snapshot(home) == first
    assert _containers(env) == []

    other = base_home("bwrap")
    _example_home(other)
    bw = {k: v for k, v in os.environ.items() if not k.startswith("USE_")}
    bwrap_res = _gbuild(other, {**bw, "USE_BWRAP": "1"})
    assert docker_res["out_manifest"] == bwrap_res["out_manifest"]
    assert "  gitian-example.zip\n" in docker_res["out_manifest"]  # canon-zip ran in Docker
    assert docker_res["in_manifest"] == bwrap_res["in_manifest"]


def test_interrupted_layer_new_packages_and_clearing_on_docker(
    docker_home: tuple[Home, dict[str, str]], tmp_path: Path
) -> None:
    home, env = docker_home
    _example_home(home)
    full = _docker_env(env)
    before = layer_dirs(home)
    desc = example_with("hello", tmp_path / "more.yml")
    images = _layer_images(env)
    interrupt_the_package_step(_gbuild_argv(home, desc), full, home, "hello")
    assert _containers(env) == [] and _layer_images(env) == images  # nothing committed
    res = _gbuild(home, full, desc)
    assert "Keeping the installed packages as layer" in str(res["progress"])
    assert "  hello_" in str(res["base_manifests"])
    made = [d for d in layer_dirs(home) if d not in before]
    assert len(made) == 1 and sorted(_layer_images(env).values()) == sorted(layer_dirs(home))
    # make-base-vm --clear-layers --docker removes them, images included; the base stays.
    r = _tool_runner(home, env)("make_base_vm", "--docker", "--clear-layers")
    assert r.returncode == 0, r.stderr
    assert layer_dirs(home) == [] and _layer_images(env) == {}
    assert _target(home, env).has_base()


# -- Podman, by GITIAN_CONTAINER_CLI=podman ------------------------------------


def test_podman_by_the_variable(
    podman_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    home = Home(tmp_path_factory.mktemp("gitian-podman"))
    _make_base(home, podman_env)
    saved = {k: os.environ.get(k) for k in podman_env}
    os.environ.update(podman_env)
    try:
        t = _target(home, podman_env)
        assert t.cli == "podman"
        assert t.run_argv()[0] == "podman"
        with t.session():
            assert _containers(podman_env, "podman") != []
            assert t.run(["id", "-un"], capture=True).stdout == b"debian\n"
            assert t.run(["sh", "-c", "ulimit -n"], capture=True).stdout == b"20000\n"
            check_copies(t, tmp_path)
            check_base_contents(t)
            t.run(["apt-get", "-q", "update"], user="root", capture=True)
        assert _containers(podman_env, "podman") == []
        assert container_name(home) not in subprocess.run(
            ["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
        ).stdout
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

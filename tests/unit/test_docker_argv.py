"""The Docker/Podman backend's command lines, Dockerfile and checks (no daemon needed).

What a real daemon does with them is in tests/integration/test_docker.py; the
registry path (``--docker-image-hash``) cannot run here, so its Dockerfile and
build command are checked exactly.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gitian.errors import TargetError, UsageError
from gitian.home import Home
from gitian.targets import choose_backend, config_from_env, make_target
from gitian.targets.base import TargetConfig
from gitian.targets.docker import (
    KEEPALIVE,
    DockerConfig,
    DockerTarget,
    container_name,
    dockerfile,
    image_name,
    normalize_digest,
)
from gitian.targets.rootfs import BaseSpec

DIGEST = "ab" * 32


def _config(tmp_path: Path, **kw: object) -> DockerConfig:
    return DockerConfig(home=Home(tmp_path), suite="bookworm", arch="amd64", distro="debian",
                        **kw)  # type: ignore[arg-type]  # fmt: skip


def _target(tmp_path: Path, cli: str = "docker", **kw: object) -> DockerTarget:
    t = make_target("docker", _config(tmp_path, container_cli=cli, **kw))
    assert isinstance(t, DockerTarget)
    return t


def test_registry_and_names(tmp_path: Path) -> None:
    assert choose_backend(None, {"USE_DOCKER": "1"}) == "docker"
    assert image_name("bookworm", "amd64") == "base-bookworm-amd64"
    # gbuild puts a descriptor's docker_image_digests entry where the suite goes.
    assert image_name("sha256:" + DIGEST, "amd64") == f"base-{DIGEST}-amd64"
    assert image_name(DIGEST, "i386") == f"base-{DIGEST}-i386"
    a = container_name(Home(tmp_path / "a"))
    assert a.startswith("gitian-target-") and len(a) == len("gitian-target-") + 8
    assert a == container_name(Home(tmp_path / "a"))
    assert a != container_name(Home(tmp_path / "b"))


def test_container_cli_comes_from_the_variable(tmp_path: Path) -> None:
    cfg = config_from_env(Home(tmp_path), backend="docker", suite="bookworm", arch="amd64",
                          env={"GITIAN_CONTAINER_CLI": "podman"})  # fmt: skip
    t = make_target("docker", cfg)
    assert isinstance(t, DockerTarget) and t.cli == "podman"
    with pytest.raises(UsageError):
        config_from_env(Home(tmp_path), backend="docker", suite="b", arch="amd64",
                        env={"GITIAN_CONTAINER_CLI": "rkt"})  # fmt: skip


def test_exec_prefix(tmp_path: Path) -> None:
    t = _target(tmp_path)
    env = t.user_env("debian") | {"A": "x y"}
    assert t.exec_prefix(user="debian", env=env, network=False, interactive=True) == [
        "docker", "exec", "-i", "-u", "debian", "-w", "/home/debian",
        "-e", "HOME=/home/debian", "-e", "USER=debian", "-e", "LOGNAME=debian",
        "-e", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "-e", "LANG=C.UTF-8", "-e", "A=x y", t.container,
    ]  # fmt: skip
    root = t.exec_prefix(user="root", env=t.user_env("root"), network=True, interactive=False)
    assert root[:6] == ["docker", "exec", "-u", "root", "-w", "/root"]
    assert root[-1] == t.container
    with pytest.raises(UsageError):
        t.exec_prefix(user="root", env={"A B": "1"}, network=False, interactive=False)


def test_run_argv_docker_and_podman(tmp_path: Path) -> None:
    t = _target(tmp_path)
    argv = t.run_argv()
    cache = tmp_path / "var" / "cache" / "debs"
    assert argv == [
        "docker", "run", "--detach", "--name", t.container,
        "--label", f"org.gitian.home={tmp_path}", "--hostname", "gitian",
        "--volume", f"{cache}:/var/cache/apt/archives",
        "base-bookworm-amd64", *KEEPALIVE,
    ]  # fmt: skip
    assert "--privileged" not in argv
    assert "--privileged" in _target(tmp_path, allow_privileged=True).run_argv()
    p = _target(tmp_path, "podman").run_argv()
    assert p[:2] == ["podman", "run"]
    i = p.index("--ulimit")
    assert p[i : i + 4] == ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
    assert p.index("base-bookworm-amd64") > i


def test_run_argv_refuses_a_home_a_volume_spec_cannot_take(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        _target(tmp_path / "a:b").run_argv()


def test_digest_forms() -> None:
    assert normalize_digest(DIGEST) == DIGEST
    assert normalize_digest("sha256:" + DIGEST.upper()) == DIGEST
    for bad in ("", "abc", "sha512:" + DIGEST, DIGEST + "0", "x" * 64, DIGEST + "\n; rm"):
        with pytest.raises(UsageError):
            normalize_digest(bad)


def test_dockerfile_is_exec_form_from_the_digest() -> None:
    text = dockerfile(f"debian@sha256:{DIGEST}")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == f"FROM debian@sha256:{DIGEST}"
    runs = [ln.removeprefix("RUN ") for ln in lines if ln.startswith("RUN ")]
    assert [json.loads(r) for r in runs] == [
        ["/bin/sh", "/tmp/gitian-setup/bootstrap-fixup"],
        ["/bin/sh", "/tmp/gitian-setup/install-packages"],
        ["/bin/bash", "/tmp/gitian-setup/upgrade-system.sh"],
        ["/bin/sh", "/tmp/gitian-setup/clean-up"],
    ]
    assert json.loads(lines[-1].removeprefix("CMD ")) == KEEPALIVE
    args = {ln.split()[1].split("=")[0] for ln in lines if ln.startswith("ARG ")}
    assert {"GITIAN_USER", "GITIAN_PACKAGES", "GITIAN_MIRROR", "GITIAN_SUITE"} <= args


def _spec(**kw: object) -> BaseSpec:
    base: dict[str, object] = dict(distro="debian", suite="bookworm", arch="amd64",
                                   mirror="http://mirror.invalid/debian",
                                   packages=("sudo", "build-essential"), user="debian")  # fmt: skip
    base.update(kw)
    return BaseSpec(**base)  # type: ignore[arg-type]


def test_build_argv_and_context(tmp_path: Path) -> None:
    t = _target(tmp_path / "home")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    tag = image_name(DIGEST, "amd64")
    argv = t.build_argv(_spec(), f"debian@sha256:{DIGEST}", tag, ctx)
    assert argv == [
        "docker", "build",
        "--build-arg", "GITIAN_USER=debian",
        "--build-arg", "GITIAN_CONTAINER=1",
        "--build-arg", "GITIAN_SUITE=bookworm",
        "--build-arg", "GITIAN_COMPONENTS=main",
        "--build-arg", "GITIAN_MIRROR=http://mirror.invalid/debian",
        "--build-arg", "GITIAN_PACKAGES=sudo build-essential",
        "--tag", f"base-{DIGEST}-amd64",
        "--file", str(ctx / "Dockerfile"), str(ctx),
    ]  # fmt: skip
    names = sorted(p.name for p in ctx.iterdir())
    assert names == ["Dockerfile", "bootstrap-fixup", "clean-up", "install-packages",
                     "upgrade-system.sh"]  # fmt: skip
    assert (ctx / "Dockerfile").read_text().startswith("# gitian-py")
    assert "FROM debian@sha256:" + DIGEST in (ctx / "Dockerfile").read_text()
    # No mirror: the image keeps its own apt sources.
    ctx2 = tmp_path / "ctx2"
    ctx2.mkdir()
    argv = _target(tmp_path / "home", "podman").build_argv(
        _spec(mirror=None, distro="ubuntu", user="ubuntu"), "ubuntu@sha256:" + DIGEST, tag, ctx2
    )
    assert argv[:2] == ["podman", "build"] and "--ulimit" in argv
    assert not any(a.startswith("GITIAN_MIRROR=") for a in argv)
    assert "GITIAN_COMPONENTS=main universe" in argv
    # An apt-cacher-ng (MIRROR_HOST) reaches bootstrap-fixup as a build argument.
    ctx3 = tmp_path / "ctx3"
    ctx3.mkdir()
    argv = _target(tmp_path / "home", mirror_host="10.0.2.2").build_argv(
        _spec(mirror=None), "debian@sha256:" + DIGEST, tag, ctx3
    )
    assert argv[argv.index("MIRROR_HOST=10.0.2.2") - 1] == "--build-arg"


def test_build_argv_refuses_bad_package_names(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with pytest.raises(UsageError, match="package"):
        _target(tmp_path).build_argv(_spec(packages=("sudo", "x; rm -rf /")), "d", "t", ctx)
    assert list(ctx.iterdir()) == []


def _fake_cli(tmp_path: Path, name: str, body: str) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    prog = bindir / name
    prog.write_text("#!/bin/sh\n" + body)
    prog.chmod(prog.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{bindir}:/usr/bin:/bin"}


def test_unavailable_reason_names_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the error text of a docker client without a daemon is imitated here.
    msg = "Cannot connect to the Docker daemon at unix:///x/docker.sock. Is it running?"
    env = _fake_cli(tmp_path, "docker", f'echo "{msg}" >&2; exit 1\n')
    monkeypatch.setenv("PATH", env["PATH"])
    reason = DockerTarget.unavailable_reason()
    assert reason == (
        "docker: cannot reach the daemon at unix:///x/docker.sock (start dockerd, "
        "or set DOCKER_HOST)"
    )


def test_unavailable_reason_missing_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    podman = _config(tmp_path, container_cli="podman")
    assert DockerTarget.unavailable_reason(config=podman) == (
        "podman is not installed (apt-get install podman)"
    )
    lxd = _config(tmp_path, container_cli="lxd")
    assert "docker or podman" in (DockerTarget.unavailable_reason(config=lxd) or "")


def test_keepalive_exits_on_sigterm() -> None:
    # PID 1 of a target must end on `docker stop` at once, not after the timeout.
    assert KEEPALIVE[:2] == ["/bin/sh", "-c"]
    assert "trap 'exit 0' TERM" in KEEPALIVE[2]
    assert os.path.basename(KEEPALIVE[0]) == "sh"


def test_missing_digest_image_says_how_to_make_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Imitates a daemon without that container or image (its error text only).
    env = _fake_cli(tmp_path, "docker", 'echo "Error: No such container: x" >&2; exit 1\n')
    monkeypatch.setenv("PATH", env["PATH"])
    cfg = TargetConfig(home=Home(tmp_path), suite="sha256:" + DIGEST, arch="amd64",
                       distro="debian")  # fmt: skip
    t = make_target("docker", cfg)
    with pytest.raises(TargetError) as e:
        t.reset()
    assert f"no docker image base-{DIGEST}-amd64" in str(e.value)
    assert e.value.hint and f"--docker-image-hash {DIGEST}" in e.value.hint


LAYER_KEY = "d" * 64
LAYER_ID = "sha256:" + "c" * 64
BASE_ID = "sha256:" + "b" * 64
FAKE_DAEMON = f"""\
echo "$*" >> "$FAKE_LOG"
case "$1 $2 $4" in
  "image inspect {{{{.Id}}}}")
    case "$5" in base-*) echo {BASE_ID} ;; *) echo {LAYER_ID} ;; esac ;;
  "image inspect {{{{.Size}}}}")
    case "$5" in base-*) echo 1000 ;; *) echo 1500 ;; esac ;;
esac
exit 0
"""


def test_a_layer_is_a_committed_image_labelled_with_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Imitates the daemon's answers only; the real one is in test_docker.py.
    log = tmp_path / "calls"
    env = _fake_cli(tmp_path, "docker", FAKE_DAEMON)
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("FAKE_LOG", str(log))
    t = _target(tmp_path / "home")
    assert t.base_identity() == {"kind": "image", "image": BASE_ID}
    dest = tmp_path / "layer"
    dest.mkdir()
    assert t.keep_layer(dest, LAYER_KEY) == 500  # its own size: layer image minus base
    calls = log.read_text().splitlines()
    tag = f"gitian-layer-{t.container.rpartition('-')[2]}:{LAYER_KEY}"
    commits = [c for c in calls if c.startswith("commit")]
    assert commits == [f"commit --change LABEL org.gitian.layer={LAYER_KEY} {t.container} {tag}"]
    assert f"stop --time 10 {t.container}" in calls  # and the container is gone
    assert (dest / "image").read_text() == LAYER_ID + "\n"
    built = _target(tmp_path / "home")
    built.from_layer(dest)
    assert built.run_argv()[-len(KEEPALIVE) - 1 :] == [LAYER_ID, *KEEPALIVE]
    assert built.base_identity() == {"kind": "image", "image": BASE_ID}  # still the base's
    built.from_layer(None)
    assert built.image == "base-bookworm-amd64"
    t.drop_layer(dest)
    assert log.read_text().splitlines()[-1] == f"image rm {LAYER_ID}"
    (dest / "image").write_text("not an id; rm -rf /\n")
    with pytest.raises(TargetError, match="names no image id"):
        t.from_layer(dest)

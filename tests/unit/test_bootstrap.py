"""Package set, host apt sources (one-line and deb822) and the mirror choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitian import bootstrap

ONE_LINE = """\
# comment
deb http://archive.test/debian bookworm main contrib
deb [arch=amd64 signed-by=/k.gpg] http://archive.test/debian bookworm-updates main
deb-src http://archive.test/debian bookworm main
deb http://security.test/debian-security bookworm-security main
"""

DEB822 = """\
Types: deb deb-src
URIs: http://archive.test/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.test/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.test/ubuntu
Suites: jammy
Components: main
"""


def test_base_packages() -> None:
    assert bootstrap.base_packages("debian")[-1] == "locales-all"
    assert bootstrap.base_packages("ubuntu")[-1] == "language-pack-en"
    assert "cron" not in bootstrap.base_packages("debian")
    for p in ("build-essential", "git", "subversion", "wget", "lsb-release", "sudo", "pciutils"):
        assert p in bootstrap.base_packages("debian")


def test_one_line_sources(tmp_path: Path) -> None:
    f = tmp_path / "sources.list"
    f.write_text(ONE_LINE)
    srcs = bootstrap.host_apt_sources(f, tmp_path / "none.d")
    assert [s.uri for s in srcs] == [
        "http://archive.test/debian",
        "http://archive.test/debian",
        "http://security.test/debian-security",
    ]
    assert srcs[1].suites == ("bookworm-updates",) and srcs[0].components == ("main", "contrib")


def test_deb822_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(DEB822)
    (d / "ignored.txt").write_text("deb http://ignored.test/debian x main\n")
    srcs = bootstrap.host_apt_sources(tmp_path / "missing", d)
    assert [(s.uri, s.suites) for s in srcs] == [
        ("http://archive.test/debian", ("bookworm", "bookworm-updates")),
        ("http://security.test/debian-security", ("bookworm-security",)),
    ]


@pytest.fixture
def host_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(DEB822)
    real = bootstrap.host_apt_sources
    monkeypatch.setattr(bootstrap, "host_apt_sources", lambda: real(tmp_path / "missing", d))


def test_mirror_choice(host_sources: None) -> None:
    # The host's archive, never its security archive.
    assert bootstrap.host_mirror("debian") == "http://archive.test/debian"
    assert bootstrap.host_mirror("ubuntu") is None
    assert bootstrap.choose_mirror("debian", explicit=None, mirror_host=None) == (
        "http://archive.test/debian"
    )
    # --mirror wins over everything.
    assert (
        bootstrap.choose_mirror("debian", explicit="http://m.test/d/", mirror_host="10.0.2.2")
        == "http://m.test/d"
    )
    # MIRROR_HOST: the upstream through apt-cacher-ng, as the classic tool.
    assert (
        bootstrap.choose_mirror("debian", explicit=None, mirror_host="10.0.2.2")
        == "http://10.0.2.2:3142/archive.test/debian"
    )
    # Nothing known: the bootstrap tool's own default.
    assert bootstrap.choose_mirror("ubuntu", explicit=None, mirror_host=None) is None


def test_bootstrap_tool_prefers_mmdebstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    import gitian.run

    monkeypatch.setattr(gitian.run, "which", lambda p: "/usr/bin/" + p)
    assert bootstrap.bootstrap_tool() == "mmdebstrap"
    monkeypatch.setattr(
        gitian.run, "which", lambda p: "/usr/sbin/debootstrap" if p == "debootstrap" else None
    )
    assert bootstrap.bootstrap_tool() == "debootstrap"
    monkeypatch.setattr(gitian.run, "which", lambda p: None)
    assert bootstrap.bootstrap_tool() is None

"""The descriptor: real descriptors load, fields come out typed, overrides validate.

(Hostile inputs are in tests/adversarial/.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gitian import descriptor
from gitian.errors import DescriptorError

MINIMAL = b"""---
name: "pkg"
distro: debian
suites:
- "bookworm"
architectures:
- "amd64"
- "i386"
packages:
- "gcc"
- "libc6-dev:i386"
- "foo=1.2-3"
reference_datetime: "2020-01-02 03:04:05"
remotes:
- "url": "https://example.invalid/pkg.git"
  "dir": "pkg"
files:
- "input-1.tar.gz"
script: |
  echo hello
enable_cache: true
sudo: true
multiarch: [i386]
repositories:
- source: "deb http://example.invalid/debian bookworm-backports main"
  distribution: bookworm-backports
  packages: [cmake]
alternatives:
- package: x86_64-w64-mingw32-g++
  path: /usr/bin/x86_64-w64-mingw32-g++-posix
optionals:
  gpg: signer
"""


def test_compat_descriptors_all_load(compat: Path) -> None:
    paths = sorted((compat / "descriptors").glob("*.yml"))
    assert len(paths) >= 6
    for p in paths:
        d = descriptor.load(p)
        assert d.name and d.suites and d.architectures
        assert d.raw == p.read_bytes()


def test_monero_descriptor_hash_matches_assert(compat: Path) -> None:
    d = descriptor.load(compat / "descriptors" / "v0.18.3.1-gitian-linux.yml")
    assert d.name == "monero-linux-0.18"
    assert d.remotes[0].dir == "monero" and d.remotes[0].commit is None
    assert d.enable_cache is True
    asserts = list((compat / "sigs" / d.name).glob("*/*/*-build.assert"))
    assert asserts
    text = asserts[0].read_text()
    assert f"{d.sha256}  {d.name}-desc.yml" in text


def test_fields_typed() -> None:
    d = descriptor.parse(MINIMAL, "pkg.yml")
    assert d.name == "pkg" and d.distro == "debian"
    assert d.suites == ("bookworm",)
    assert d.architectures == ("amd64", "i386")
    assert d.packages == ("gcc", "libc6-dev:i386", "foo=1.2-3")
    assert d.reference_datetime == "2020-01-02 03:04:05"
    assert d.remotes == (descriptor.Remote("https://example.invalid/pkg.git", "pkg", None),)
    assert d.files == ("input-1.tar.gz",)
    assert d.script == "echo hello\n"
    assert d.enable_cache and d.sudo
    assert d.multiarch == ("i386",)
    assert d.repositories[0].packages == ("cmake",)
    assert d.alternatives[0].path == "/usr/bin/x86_64-w64-mingw32-g++-posix"
    assert d.optionals == {"gpg": "signer"}
    assert (d.bits("i386"), d.setarch("i386")) == (32, "i386")
    assert (d.bits("amd64"), d.setarch("amd64")) == (64, "x86_64")


def test_defaults() -> None:
    d = descriptor.parse(
        b"name: x\nsuites: [s]\narchitectures: [linux64]\n"
        b"reference_datetime: '2020-01-01 00:00:00'\n"
    )
    assert d.distro == "ubuntu" and d.packages == () and d.script == ""
    assert not d.enable_cache and not d.sudo and d.optionals is None
    assert d.bits("linux64") == 64 and d.setarch("linux64") == "linux64"


def test_unquoted_reference_datetime_is_accepted() -> None:
    d = descriptor.parse(
        b"name: x\nsuites: [s]\narchitectures: [amd64]\nreference_datetime: 2013-06-01 00:00:00\n"
    )
    assert d.reference_datetime == "2013-06-01 00:00:00"


def test_unknown_keys_ignored() -> None:
    d = descriptor.parse(MINIMAL + b"whatever: [1, 2]\n")
    assert d.name == "pkg"


def test_an_unknown_key_is_one_warning_line() -> None:
    d = descriptor.parse(MINIMAL + b"version: 1.2\n", "pkg.yml")
    assert d.warnings == ("pkg.yml: unknown key 'version' ignored",)
    assert descriptor.parse(MINIMAL, "pkg.yml").warnings == ()
    # Inside entries too, and many keys still make one bounded line.
    raw = MINIMAL.replace(b'  "dir": "pkg"\n', b'  "dir": "pkg"\n  branch: main\n')
    raw += b"".join(b"custom%d: x\n" % i for i in range(30))
    (line,) = descriptor.parse(raw, "pkg.yml").warnings
    assert line.startswith("pkg.yml: unknown keys 'custom0', ")
    assert line.endswith(" and 21 more ignored") and "\n" not in line
    raw = MINIMAL.replace(b'  "dir": "pkg"\n', b'  "dir": "pkg"\n  branch: main\n')
    assert descriptor.parse(raw, "pkg.yml").warnings == (
        "pkg.yml: unknown key 'remotes[0].branch' ignored",
    )
    # A key that is not printable is shown escaped.
    (line,) = descriptor.parse(MINIMAL + b"'x\\e[2J': 1\n", "pkg.yml").warnings
    assert line.isprintable()


# Keys projects carry of their own (and keys of other tools' YAML): warned about, never refused.
CUSTOM_KEYS = [
    "version", "description", "maintainer", "homepage", "license", "notes", "comment",
    "release", "source", "sources", "env", "environment", "extra", "targets", "tags",
    "ccache", "gitian_version", "url", "author", "type", "host", "hosts", "variant", "base",
    "image", "depends", "patches", "outputs", "signers", "website", "platforms", "vars",
    "settings", "toolchain", "compiler", "cache", "whatever",
]  # fmt: skip


@pytest.mark.parametrize("key", CUSTOM_KEYS)
def test_custom_keys_are_warned_about(key: str) -> None:
    d = descriptor.parse(MINIMAL + f"{key}: x\n".encode(), "pkg.yml")
    assert d.warnings == (f"pkg.yml: unknown key {key!r} ignored",)


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("pakages", "packages"),
        ("file", "files"),
        ("remote", "remotes"),
        ("architecture", "architectures"),
        ("refrence_datetime", "reference_datetime"),
        ("scrip", "script"),
        ("suite", "suites"),
        ("Packages", "packages"),
        ("enable-cache", "enable_cache"),
        ("optional", "optionals"),
        ("alternative", "alternatives"),
        ("repository", "repositories"),
        ("multi_arch", "multiarch"),
        ("docker_image_digest", "docker_image_digests"),
    ],
)
def test_a_typo_is_refused_naming_the_key_meant(typo: str, meant: str) -> None:
    with pytest.raises(DescriptorError) as e:
        descriptor.parse(MINIMAL + f"{typo}: x\n".encode(), "pkg.yml")
    assert str(e.value) == f"pkg.yml: unknown key {typo!r} (did you mean {meant!r}?)"
    assert e.value.hint and "spelling" in e.value.hint


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'  "dir": "pkg"', b'  "dir": "pkg"\n  comit: abc', "'remotes[0].comit' (... 'commit'?)"),
        (b'  "dir": "pkg"', b'  "dir": "pkg"\n  urls: x', "'remotes[0].urls' (... 'url'?)"),
        (
            b"  distribution:",
            b"  pakages: [x]\n  distribution:",
            "'repositories[0].pakages' (... 'packages'?)",
        ),
        (b"  path: /usr", b"  paths: x\n  path: /usr", "'alternatives[0].paths' (... 'path'?)"),
    ],
)
def test_a_typo_inside_an_entry_is_refused(old: bytes, new: bytes, message: str) -> None:
    raw = MINIMAL.replace(old, new, 1)
    assert raw != MINIMAL
    with pytest.raises(DescriptorError) as e:
        descriptor.parse(raw, "pkg.yml")
    expected = message.replace("...", "did you mean")
    assert str(e.value) == f"pkg.yml: unknown key {expected}"


def test_a_typo_is_reported_before_what_it_causes() -> None:
    # 'remote:' for 'remotes:' would otherwise say reference_datetime is missing.
    raw = b"name: x\nsuites: [s]\narchitectures: [amd64]\nremote: []\n"
    with pytest.raises(DescriptorError, match="unknown key 'remote' \\(did you mean 'remotes'"):
        descriptor.parse(raw)


def test_real_descriptors_have_no_unknown_keys(compat: Path) -> None:
    for p in sorted((compat / "descriptors").glob("*.yml")):
        assert descriptor.load(p).warnings == (), p


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ((b'name: "pkg"', b""), "'name'"),
        ((b'- "bookworm"', b""), "'suites'"),
        ((b'- "i386"', b'- "arm64"'), "'architectures'"),
        ((b"enable_cache: true", b"enable_cache: 'yes'"), "'enable_cache'"),
        ((b"distro: debian", b"distro: fedora"), "'distro'"),
        ((b'"2020-01-02 03:04:05"', b'"2020-13-02 03:04:05"'), "reference_datetime"),
    ],
)
def test_one_line_errors_name_the_key(patch: tuple[bytes, bytes], needle: str) -> None:
    with pytest.raises(DescriptorError) as e:
        descriptor.parse(MINIMAL.replace(*patch), "pkg.yml")
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and msg.startswith("pkg.yml: ")


def test_reference_datetime_required_without_remotes() -> None:
    with pytest.raises(DescriptorError, match="reference_datetime"):
        descriptor.parse(b"name: x\nsuites: [s]\narchitectures: [amd64]\n")


def test_overrides() -> None:
    d = descriptor.parse(MINIMAL)
    o = d.with_overrides({"pkg": "v1.0"}, {"pkg": "/srv/git/pkg"})
    assert o.remotes[0] == descriptor.Remote("/srv/git/pkg", "pkg", "v1.0")
    assert d.remotes[0].commit is None  # frozen, unchanged
    with pytest.raises(DescriptorError, match="no remote with dir 'nope'"):
        d.with_overrides({"nope": "abc"})
    with pytest.raises(DescriptorError) as e:
        d.with_overrides(urls={"pgk": "/srv/git/pkg"})
    assert str(e.value) == "--url: no remote with dir 'pgk' in the descriptor (did you mean 'pkg'?)"
    assert e.value.hint == "its remotes' dirs: pkg"
    with pytest.raises(DescriptorError, match="--commit"):
        d.with_overrides({"pkg": "--upload-pack=touch"})
    with pytest.raises(DescriptorError, match="--url"):
        d.with_overrides(urls={"pkg": "ext::sh"})


def test_parse_assignments() -> None:
    assert descriptor.parse_assignments(["a=1,b=2", "c=3"], "--commit") == {
        "a": "1",
        "b": "2",
        "c": "3",
    }
    assert descriptor.parse_assignments(None, "--commit") == {}
    with pytest.raises(DescriptorError, match="--url: expected dir=value"):
        descriptor.parse_assignments("novalue", "--url")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(DescriptorError, match="no such descriptor"):
        descriptor.load(tmp_path / "missing.yml")
    with pytest.raises(DescriptorError, match="is a directory"):
        descriptor.load(tmp_path)


def test_field_table_covers_the_descriptor() -> None:
    # One table entry per Descriptor attribute (but the file's path and bytes),
    # and one per attribute of each kind of list entry.
    import dataclasses

    def names(cls: type) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    assert sorted(f.key for f in descriptor.FIELDS) == sorted(
        n for n in names(descriptor.Descriptor) if n not in ("path", "raw", "warnings")
    )
    for table, cls in (
        (descriptor.REMOTE_FIELDS, descriptor.Remote),
        (descriptor.REPOSITORY_FIELDS, descriptor.Repository),
        (descriptor.ALTERNATIVE_FIELDS, descriptor.Alternative),
    ):
        assert sorted(f.key for f in table) == sorted(names(cls))

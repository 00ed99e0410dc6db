"""The frozen dataclasses: a validated descriptor and its parts, and the
content of a result or assert file.

They live apart from the code that makes them (:mod:`gitian.descriptor`,
:mod:`gitian.manifest`, which hand them out under their usual names) so that
gverify - which checks a descriptor and reads asserts but never needs these
objects - does not load the dataclasses machinery at start-up (issue 2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitian.descriptor import ARCHITECTURES, _commit, _url
from gitian.errors import DescriptorError

# --------------------------------------------------------------------------
# the descriptor


@dataclass(frozen=True)
class Remote:
    url: str
    dir: str
    commit: str | None = None


@dataclass(frozen=True)
class Repository:
    source: str
    distribution: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class Alternative:
    package: str
    path: str


@dataclass(frozen=True)
class Descriptor:
    """A validated descriptor.  ``raw`` is the file's bytes (hashed into the in_manifest)."""

    path: Path
    raw: bytes = field(repr=False)
    name: str
    distro: str
    suites: tuple[str, ...]
    architectures: tuple[str, ...]
    packages: tuple[str, ...] = ()
    reference_datetime: str | None = None
    remotes: tuple[Remote, ...] = ()
    files: tuple[str, ...] = ()
    script: str = ""
    enable_cache: bool = False
    sudo: bool = False
    multiarch: tuple[str, ...] = ()
    repositories: tuple[Repository, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    docker_image_digests: tuple[str, ...] = ()
    optionals: Any = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def with_overrides(
        self, commits: Mapping[str, str] | None = None, urls: Mapping[str, str] | None = None
    ) -> Descriptor:
        """Apply gbuild's ``--commit dir=hash`` and ``--url dir=url`` (validated like the file)."""
        commits = dict(commits or {})
        urls = dict(urls or {})
        dirs = {r.dir for r in self.remotes}
        for opt, given in (("--commit", commits), ("--url", urls)):
            for d in given:
                if d not in dirs:
                    raise DescriptorError(f"{opt}: no remote with dir {d!r} in the descriptor")
        remotes = []
        for r in self.remotes:
            url = _url(urls[r.dir], "--url", local_ok=True) if r.dir in urls else r.url
            commit = _commit(commits[r.dir], "--commit") if r.dir in commits else r.commit
            remotes.append(replace(r, url=url, commit=commit))
        return replace(self, remotes=tuple(remotes))

    def bits(self, arch: str) -> int:
        return ARCHITECTURES[arch][0]

    def setarch(self, arch: str) -> str:
        return ARCHITECTURES[arch][1]


# --------------------------------------------------------------------------
# result and assert files


@dataclass(frozen=True)
class Report:
    """The content of a result file or an assert.

    ``base_manifests`` keeps its order: ``(("<suite>-<arch>", text), ...)``.
    The assert fields are ``None`` for a result file; ``has_assert_fields``
    says whether the file carried any of them.
    """

    out_manifest: str
    in_manifest: str = ""
    base_manifests: tuple[tuple[str, str], ...] = ()
    cache_common_manifest: str = ""
    cache_package_manifest: str = ""
    release: str | None = None
    name: str | None = None
    type: str | None = None
    optionals: Any = None
    has_assert_fields: bool = False

    def as_result(self) -> Report:
        """The same manifests without the assert fields."""
        return Report(
            self.out_manifest,
            self.in_manifest,
            self.base_manifests,
            self.cache_common_manifest,
            self.cache_package_manifest,
        )

    def as_assert(self, release: str, name: str, optionals: Any) -> Report:
        """The assert gsign makes from this result."""
        return Report(
            self.out_manifest,
            self.in_manifest,
            self.base_manifests,
            self.cache_common_manifest,
            self.cache_package_manifest,
            release=release,
            name=name,
            type="build",
            optionals=optionals,
            has_assert_fields=True,
        )

"""Checks of single descriptor values, which the field table in
:mod:`gitian.descriptor` names.

Each check takes a YAML value and the label its message names (``'name'``,
``remotes[0].url``) and returns the parsed value, or raises a one-line
:class:`~gitian.errors.DescriptorError`: wrong types, unsafe names,
option-like values, git transports that run programs.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

from gitian.errors import DescriptorError
from gitian.text import printable

MAX_LIST_ITEMS = 10_000
MAX_NAME_LENGTH = 200  # <name>-build.assert.sig must fit in a file name
MAX_URL_LENGTH = 2048

SANITARY = re.compile(r"[A-Za-z0-9_.\-]+")
ARCHITECTURES: dict[str, tuple[int, str]] = {
    # arch -> (bits, setarch personality)
    "i386": (32, "i386"),
    "amd64": (64, "x86_64"),
    "linux64": (64, "linux64"),
}
DISTROS = ("ubuntu", "debian")
# Debian package names, optionally with :arch, =version or /release.
PACKAGE = re.compile(
    r"[a-z0-9][a-z0-9+.\-]*(:[a-z0-9\-]+)?(=[A-Za-z0-9.+~:\-]+|/[A-Za-z0-9.+~\-]+)?"
)
ALTERNATIVE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._\-]*")
ALTERNATIVE_PATH = re.compile(r"(/[A-Za-z0-9+._\-]+)+")
DPKG_ARCH = re.compile(r"[a-z0-9][a-z0-9\-]*")
# A commit: a hex id or a ref/tag name as git check-ref-format would accept it
# (no leading '-', no '..', no component starting with '.', no control or
# special characters such as ~ ^ : ? * [ \ @{).
COMMIT = re.compile(
    r"(?!-)(?!.*\.\.)(?!.*//)(?!.*/\.)(?!.*@\{)[A-Za-z0-9][A-Za-z0-9._/+\-]*(?<![./])"
)
DIGEST = re.compile(r"([a-z0-9._/\-]+@)?sha256:[0-9a-f]{64}")
URL_SCHEMES = ("https", "http", "git", "ssh", "git+ssh", "ssh+git", "file")
# Schemes that name a path on this machine: only from the command line (--url).
LOCAL_SCHEMES = ("file",)
# Characters no git URL needs and a shell would act on.
URL_FORBIDDEN = frozenset(" \t`$;|&<>(){}\\\"'*?!#^")
URL_HOST = re.compile(r"[A-Za-z0-9._~%:\[\]\-]*")
# An apt source line: "deb[-src] [options] URI SUITE [COMPONENT...]", no shell
# metacharacters (it is written into the target's sources.list).
APT_SOURCE = re.compile(r"deb(-src)? (\[[A-Za-z0-9=,._:/+\- ]+\] )?[A-Za-z0-9:/._~+%@=,\- ]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A URL's scheme, and a git transport helper ("<helper>::").
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_TRANSPORT = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)::")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)

def kind(v: Any) -> str:
    """What ``v`` is, for a message ("a list", "null")."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def shown(v: str) -> str:
    """A value shown in an error: escaped, quoted, and cut if long."""
    return printable(v, quote=True, limit=60)


def string(v: Any, key: str) -> str:
    """A string (a number or date would need quotes)."""
    if not isinstance(v, str):
        raise DescriptorError(
            f"{key!r} must be a string, not {kind(v)}",
            hint="quote the value" if isinstance(v, (int, float, datetime.date)) else None,
        )
    return v


def no_control(v: str, key: str, *, allow_newlines: bool = False) -> str:
    """``v`` if every character is printable (newlines and tabs too with ``allow_newlines``)."""
    # C0 and C1 controls, DEL, bidi overrides, zero-width and line separators alike
    if not (v.replace("\n", "").replace("\t", "") if allow_newlines else v).isprintable():
        raise DescriptorError(f"{key!r} contains a control character: {shown(v)}")
    return v


def sanitary(v: Any, key: str) -> str:
    """A name safe as one path component: letters, digits, ``_ . -``."""
    s = string(v, key)
    if len(s) > MAX_NAME_LENGTH:
        raise DescriptorError(f"{key!r} value is longer than {MAX_NAME_LENGTH} characters")
    if not SANITARY.fullmatch(s) or s in (".", "..") or s.startswith(("-", ".")):
        raise DescriptorError(
            f"{key!r} value {shown(s)} is not sanitary "
            "(only letters, digits, '_', '.', '-'; not starting with '.' or '-')"
        )
    return s


def sequence(v: Any, key: str, *, required: bool = False) -> list[Any]:
    """A list of at most :data:`MAX_LIST_ITEMS` (null: empty, or refused when ``required``)."""
    if v is None:
        if required:
            raise DescriptorError(f"missing required key {key!r}")
        return []
    if not isinstance(v, list):
        raise DescriptorError(f"{key!r} must be a list, not {kind(v)}")
    if required and not v:
        raise DescriptorError(f"{key!r} must not be empty")
    if len(v) > MAX_LIST_ITEMS:
        raise DescriptorError(f"{key!r} has more than {MAX_LIST_ITEMS} entries")
    return v


def mapping(v: Any, key: str) -> dict[str, Any]:
    """A mapping (a list entry such as ``remotes[0]``)."""
    if not isinstance(v, dict):
        raise DescriptorError(f"{key} must be a mapping, not {kind(v)}")
    return v


def boolean(v: Any, key: str) -> bool:
    """true or false (null: false)."""
    if v is None:
        return False
    if not isinstance(v, bool):
        raise DescriptorError(f"{key!r} must be true or false, not {kind(v)}")
    return v


def matching(pattern: re.Pattern[str], what: str) -> Callable[[Any, str], str]:
    """A check for a list entry: a string that ``pattern`` matches whole."""

    def check(v: Any, key: str) -> str:
        s = string(v, key)
        if not pattern.fullmatch(s):
            raise DescriptorError(f"{key!r} entry {shown(s)} is not {what}")
        return s

    return check


package = matching(PACKAGE, "a Debian package name")
dpkg_arch = matching(DPKG_ARCH, "a dpkg architecture")
digest = matching(DIGEST, "a sha256:<64 hex> digest")


def commit(v: Any, key: str) -> str:
    """A commit id, tag or branch name that git cannot read as an option or a range."""
    s = string(v, key)
    if not COMMIT.fullmatch(s) or s.endswith(".lock") or len(s) > 255:
        raise DescriptorError(f"{key!r} value {shown(s)} is not a commit, tag or branch name")
    return s


def url(v: Any, key: str, *, local_ok: bool = False) -> str:
    """A git remote URL that git will not turn into a program run or an option.

    Refused: transports ``<helper>::`` (``ext::`` runs any command, ``fd::``
    reads descriptors), schemes other than :data:`URL_SCHEMES`, anything that
    starts with ``-`` (read as an option by git or ssh, also as a user or host
    name: ``ssh://-oProxyCommand=...``), shell metacharacters, whitespace and
    control characters.  A path on this machine (absolute, ``file://``, or
    relative and leaving ``inputs/``) is only accepted from the command line
    (``local_ok``, for ``--url``): a descriptor written by someone else must
    not make us read the builder's own repositories into the build.
    """
    s = string(v, key)
    if not s:
        raise DescriptorError(f"{key!r} is empty")
    if len(s) > MAX_URL_LENGTH:
        raise DescriptorError(f"{key!r} is longer than {MAX_URL_LENGTH} characters")
    no_control(s, key)
    m = _TRANSPORT.match(s)
    if m:
        raise DescriptorError(
            f"{key!r} uses the git transport {m.group(1)!r}::, which runs programs; refused"
        )
    if s.startswith("-"):
        raise DescriptorError(f"{key!r} value {shown(s)} starts with '-' (read as an option)")
    bad = sorted(set(s) & URL_FORBIDDEN)
    if bad:
        raise DescriptorError(
            f"{key!r} value {shown(s)} contains {shown(''.join(bad))}, "
            "which no repository URL needs"
        )
    m = _SCHEME.match(s)
    if m:
        scheme = m.group(1).lower()
        if scheme not in URL_SCHEMES:
            raise DescriptorError(
                f"{key!r} URL scheme {m.group(1)!r} is not allowed "
                f"(allowed: {', '.join(URL_SCHEMES)})"
            )
        if scheme in LOCAL_SCHEMES:
            if not local_ok:
                raise _local_refused(s, key)
            return s
        authority = s[m.end() :].split("/", 1)[0]
        user, _, host = authority.rpartition("@")
        host = host.lstrip("[")
        if not host:
            raise DescriptorError(f"{key!r} URL {shown(s)} has no host")
        if host.startswith("-") or user.startswith("-"):
            raise DescriptorError(
                f"{key!r} host or user in {shown(s)} starts with '-' (read as an option)"
            )
        if not URL_HOST.fullmatch(host):
            raise DescriptorError(f"{key!r} host in {shown(s)} is not a host name")
        return s
    head = s.split("/", 1)[0]
    if ":" in head:
        # scp-like [user@]host:path, which git hands to ssh
        user, _, host = head.split(":", 1)[0].rpartition("@")
        host = host.lstrip("[")
        if not host or host.startswith("-") or user.startswith("-"):
            raise DescriptorError(
                f"{key!r} host or user in {shown(s)} is empty or starts with '-'"
            )
        if not URL_HOST.fullmatch(host):
            raise DescriptorError(f"{key!r} host in {shown(s)} is not a host name")
        return s
    # A local path.  git runs in inputs/<dir>, so a relative path is taken
    # from there; from a descriptor it must stay inside inputs/.
    if not local_ok:
        parts = [x for x in s.split("/") if x not in ("", ".")]
        depth = 1  # inputs/<dir>
        for part in parts:
            depth += -1 if part == ".." else 1
            if depth < 0:
                raise _local_refused(s, key)
        if s.startswith("/"):
            raise _local_refused(s, key)
    return s


def _local_refused(s: str, key: str) -> DescriptorError:
    return DescriptorError(
        f"{key!r} value {shown(s)} is a path on this machine outside inputs/; "
        "a descriptor may not name one",
        hint="to build from a local repository, pass --url DIR=PATH to gbuild",
    )


def reference_datetime(v: Any, key: str) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (UTC), from a string or an unquoted YAML timestamp."""
    if isinstance(v, datetime.date):  # an unquoted YAML timestamp
        when: datetime.datetime
        if isinstance(v, datetime.datetime):
            if v.tzinfo is not None:
                try:
                    v = v.astimezone(datetime.UTC).replace(tzinfo=None)
                except (OverflowError, ValueError):
                    raise DescriptorError(f"{key!r} is out of range") from None
            when = v.replace(microsecond=0)
        else:
            when = datetime.datetime(v.year, v.month, v.day)
        year, text = when.year, when.strftime("%Y-%m-%d %H:%M:%S")
    else:
        text = string(v, key)
        if not _DATETIME.fullmatch(text):
            raise DescriptorError(
                f"{key!r} must look like 'YYYY-MM-DD HH:MM:SS', got {shown(text)}"
            )
        try:
            year = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").year
        except ValueError:
            raise DescriptorError(f"{key!r} is not a real date and time: {shown(text)}") from None
    if not 1970 <= year <= 9999:
        raise DescriptorError(f"{key!r} must be between 1970 and 9999, got year {year}")
    return text


def optionals(v: Any, key: str = "optionals", depth: int = 0) -> Any:
    """Optionals are copied into the assert: plain YAML data only."""
    if depth > 50:
        raise DescriptorError(f"{key!r} is nested too deeply")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, datetime.date):
        return v
    if isinstance(v, list):
        return [optionals(x, key, depth + 1) for x in v]
    if isinstance(v, dict):
        return {k: optionals(x, key, depth + 1) for k, x in v.items()}
    raise DescriptorError(f"{key!r} holds an unsupported value ({kind(v)})")


def distro(v: Any, key: str) -> str:
    """One of :data:`DISTROS`."""
    distro = string(v, key)
    if distro not in DISTROS:
        raise DescriptorError(f"{key!r} must be one of {', '.join(DISTROS)}, not {shown(distro)}")
    return distro


def architecture(v: Any, key: str) -> str:
    """One of :data:`ARCHITECTURES`."""
    a = string(v, key)
    if a not in ARCHITECTURES:
        raise DescriptorError(f"{key!r} entry {shown(a)} is not one of {', '.join(ARCHITECTURES)}")
    return a


def script(v: Any, key: str) -> str:
    """The build script: any text but NUL."""
    script = string(v, key)
    if "\x00" in script:
        raise DescriptorError(f"{key!r} contains a NUL byte")
    return script


def apt_source(v: Any, key: str) -> str:
    """A ``deb`` line for sources.list, with no shell metacharacters."""
    source = no_control(string(v, key), key)
    if not APT_SOURCE.fullmatch(source):
        raise DescriptorError(
            f"{key} {shown(source)} is not an apt line "
            "('deb [options] URI SUITE COMPONENT...', no shell metacharacters)"
        )
    return source


def alternative_name(v: Any, key: str) -> str:
    """An update-alternatives name."""
    alt = string(v, key)
    if not ALTERNATIVE.fullmatch(alt):
        raise DescriptorError(f"{key} {shown(alt)} is not an alternatives name")
    return alt


def alternative_path(v: Any, key: str) -> str:
    """An absolute path of plain names, for update-alternatives."""
    pth = no_control(string(v, key), key)
    if not ALTERNATIVE_PATH.fullmatch(pth) or set(pth.split("/")) & {".", ".."}:
        raise DescriptorError(
            f"{key} {shown(pth)} must be an absolute path of plain names "
            "(letters, digits, '+._-'; no '.' or '..')"
        )
    return pth

"""One exception tree for the whole toolkit.

Three kinds, as in autopkgtest: the user misused the tool (``UsageError``,
exit 2), the infrastructure failed (``TargetError``), the thing being built
failed (``BuildError``).  Only :mod:`gitian.cli` turns these into exit codes.
"""

from __future__ import annotations


class GitianError(Exception):
    """Base of every expected failure.  ``hint`` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(GitianError):
    """The user gave bad options or bad input (exit 2)."""

    exit_code = 2


class DescriptorError(UsageError):
    """A descriptor is missing a key, has a wrong type or an unsafe value."""


class InputError(UsageError):
    """An input (file, git remote, result file) is missing or unusable."""


class ToolMissingError(UsageError):
    """A host program or privilege the requested operation needs is absent."""


class TargetError(GitianError):
    """The target (VM/container) could not be made, started, reached or stopped."""


class CommandError(GitianError):
    """A host command failed.  ``argv`` is what to paste to rerun it."""

    def __init__(
        self,
        message: str,
        *,
        argv: list[str] | None = None,
        returncode: int | None = None,
        output: str = "",
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.argv = argv
        self.returncode = returncode
        self.output = output


class BuildError(GitianError):
    """The descriptor's build (packages, script) failed on the target."""


class SignError(GitianError):
    """Signing an assert failed."""


class VerifyError(GitianError):
    """Verification could not be carried out (not: a signer failed)."""


class Interrupted(GitianError):
    """SIGINT/SIGTERM arrived; everything started has been stopped."""

    exit_code = 130

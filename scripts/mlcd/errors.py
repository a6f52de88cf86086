"""The exceptions of mlcd: one class per exit code (docs/foundation.md, "Exit codes.").

Every expected failure is raised as one of these. The CLI's single top-level handler
prints the message (and the hint, when there is one) and exits with the class's code;
a traceback is shown only with ``--verbose``. An error raised while handling another is
raised ``from`` it, so that ``--verbose`` shows the cause's own traceback too (the
estimator's, Docker's, the parser's).

The exit code says whose the problem is: what the user wrote (the config, the arguments,
the data, a Dockerfile that cannot be built) is 2, what the machine lacks is 3.
"""

from __future__ import annotations


class MlcdError(Exception):
    """Base class: an expected failure with a human message and an exit code."""

    exit_code: int = 1
    label: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems: list[str] = list(problems or [])

    def render(self) -> str:
        """The text the user reads: message, one line per problem, and the hint."""
        lines = [f"mlcd: {self.label}: {self.message}"]
        lines.extend(f"  {p}" for p in self.problems)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class GateFailed(MlcdError):  # noqa: N818 - the names are part of the stage contract
    """Exit 1: a gate said no (findings, failed tests, a metric below its bound, a rollback)."""

    exit_code = 1
    label = "gate failed"


class UserInputError(MlcdError):
    """Exit 2: the user's input is wrong (config, arguments, data, missing files, a broken
    Dockerfile)."""

    exit_code = 2
    label = "input error"


class EnvironmentMissing(MlcdError):  # noqa: N818 - see GateFailed
    """Exit 3: the environment lacks something (no Docker engine, no trivy, no registry)."""

    exit_code = 3
    label = "environment"

"""A refusal: the one shape of "no" that crosses every boundary (activity -> workflow -> API).

A business refusal is a value, not a crash: `code` is the stable machine-readable name (one of
the `StrEnum` codes of a contract module, or a compliance gate's code), `reason` the sentence
shown to the partner. Activities raise it as a non-retryable `ApplicationError` (`as_error`),
workflows read it back (`Refusal.of`), and api/problems.py maps every code to one HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.exceptions import ApplicationError


@dataclass(frozen=True)
class Refusal:
    code: str
    reason: str

    def as_error(self, *details: object) -> ApplicationError:
        """The non-retryable activity error that carries this refusal to the workflow."""
        return ApplicationError(self.reason, *details, type=self.code, non_retryable=True)

    @staticmethod
    def of(error: BaseException) -> Refusal | None:
        """The refusal an activity raised (directly or as the cause of an ActivityError), or None
        for anything else (a bug, retries exhausted) — which must stay loud."""
        cause = getattr(error, "cause", None) or error
        if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type:
            return Refusal(cause.type, cause.message)
        return None

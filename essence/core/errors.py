"""Errors a user can cause and fix. The CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class EssenceError(Exception):
    """A mistake the user can fix; the message says what to do next."""

    exit_code = 2


class UnknownComponentError(EssenceError, KeyError):
    """A generator, encoder, loss or asset name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        self.suggestions = did_you_mean(name, known)
        message = f"Unknown {kind} {name!r}."
        if self.suggestions:
            message += " Did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        else:
            message += f" Run `essence list {kind}s` to see what is installed."
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DuplicateNameError(EssenceError):
    """Two plugins registered the same name; loading both would make one silently win."""


class ConfigError(EssenceError, ValueError):
    """A configuration value that does not validate."""


class WeightsError(EssenceError):
    """A weights file that is missing, corrupt, of the wrong architecture or unsafe."""


class MissingExtraError(EssenceError):
    """An optional capability whose packages are not installed; the message says what to install."""

    def __init__(self, what: str, extra: str, packages: Iterable[str] = ()):
        self.extra = extra
        names = ", ".join(packages)
        needs = f" (needs {names})" if names else ""
        super().__init__(f"{what}{needs} is not installed: pip install \"essence-transfer[{extra}]\"")

    @classmethod
    def with_hint(cls, exc: MissingExtraError, hint: str) -> MissingExtraError:
        """The same error with another way out added to its message."""
        new = cls.__new__(cls)
        EssenceError.__init__(new, f"{exc} ({hint}).")
        new.extra = exc.extra
        return new


class PluginLoadWarning(UserWarning):
    """A plugin failed to import or to register; everything else keeps working."""


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Close matches only: never the whole list."""
    known = list(known)
    lower = {k.lower(): k for k in known}
    matches = difflib.get_close_matches(name.lower(), list(lower), n=n, cutoff=0.6)
    return [lower[m] for m in matches]

"""The exceptions bioscale raises for bad input and failed runs."""


def first_line(error: BaseException | str, default: str | None = None) -> str:
    """The first non-blank line of an error's message, for a one-line report; `default` (else the error's type) when it has none."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0].strip()
    if default is not None:
        return default
    return type(error).__name__ if isinstance(error, BaseException) else ""


class UsageError(ValueError):
    """Bad input from a user: the message says what is wrong and how to fix it, in one line."""


class Diverged(RuntimeError):
    """A run whose loss or weights became NaN or infinite, whose loss grew far beyond its start, or whose error stayed at chance."""

    def __init__(self, reason: str, epoch: int, *, stalled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.epoch = epoch
        self.stalled = stalled  # the error stayed at chance (the loss itself stayed finite)

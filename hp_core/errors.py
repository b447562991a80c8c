"""The one exception type a user can meet: a sentence that says what went wrong and what to do."""


class HPError(RuntimeError):
    """A problem the user can act on (missing face, wrong weights file, bad setting, ...)."""

    def __init__(self, message: str, *, hint: str | None = None):
        self.hint = hint
        super().__init__(message if not hint else f"{message} {hint}")

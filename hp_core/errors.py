"""The one exception type a user can meet: a sentence that says what went wrong and what to do."""


class HPError(RuntimeError):
    """A problem the user can act on (missing face, wrong weights file, bad setting, ...).

    ``action``, when given, is what to do, and comes first (its own line): the one sentence a user reads
    in a dialog; ``message`` (+ ``hint``) are the details after it."""

    def __init__(self, message: str, *, hint: str | None = None, action: str | None = None):
        self.hint = hint
        self.action = action
        self.detail = message if not hint else f"{message} {hint}"
        super().__init__(self.detail if not action else f"{action}\n{self.detail}")

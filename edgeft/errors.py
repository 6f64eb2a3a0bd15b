"""The one exception type users see: a message, no traceback, exit code 2 (bad input)."""


class EdgeftError(Exception):
    """A problem with the user's input or environment, reported as `error: ...` lines by the CLI.

    Args:
        problems: one message, or several to report at once.
        exit_code: 2 for bad input (the default), 1 for a failed run.
    """

    def __init__(self, problems: str | list[str], exit_code: int = 2):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.exit_code = exit_code
        super().__init__("\n".join(self.problems))


def missing_extra(what: str, extra: str) -> EdgeftError:
    """The error for an optional backend that is not installed, with the exact install line."""
    return EdgeftError(f'{what} needs: pip install "edgeft[{extra}]"')

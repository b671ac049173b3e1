"""One kind of error for everything a user can get wrong.

A KilnError carries a single line that names the thing at fault and the fix;
dodo.py and the CLIs print just that line (no traceback) and exit non-zero.
"""


class KilnError(Exception):
    """A user-facing failure: bad input, missing tool, broken environment."""

    def __init__(self, message: str):
        # Keep it to one line: CI logs and terminals show it whole.
        super().__init__(" ".join(message.split("\n")))

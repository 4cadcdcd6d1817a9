"""The one error type users see: a problem with what they gave us, told in one line (exit code 2)."""


class HwUtilError(Exception):
    """Bad input: a broken model file, an unbound dim, an unknown option value, a wrong hwspec field.

    The message is a single line that names the problem and, where there is one, the flag that fixes it.
    """


class NoBatchDim(HwUtilError):
    """--batch for a model with no leading dim to set (scalar inputs): callers tell it from other errors."""

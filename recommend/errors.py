"""Errors that callers handle by name."""


class TooSmall(ValueError):
    """The data is too small for this tuning or evaluation (e.g. an empty validation split).

    Callers report it ("too small: <reason>") and go on with defaults instead of failing a run.
    """

"""The one exception type the package raises for bad input."""


class SegFlowError(Exception):
    """A bad input or an unusable file; the message names the input and what is wrong."""

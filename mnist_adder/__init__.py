"""mnist-adder: read an MNIST digit, add a number 0..9 to it, with Lightning and Hydra."""


class UserError(Exception):
    """A problem with what the user asked for: reported as one line, with no traceback."""

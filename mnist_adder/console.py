"""What the console shows: third-party notices a user can do nothing about are silenced, each narrowly, by
its exact message and the module that gives it. Everything else, warnings included, still shows."""

from __future__ import annotations

import logging
import warnings

# (message regex, module regex) of warnings that are about a library's internals, not about this project.
SILENCED_WARNINGS = [
    # Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; nothing here calls it.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),
    # The in-memory dataset hands out whole batches; worker processes would only compete for the cores.
    (r".*does not have many workers", r"lightning\.pytorch\..*"),
]
# Log lines that advertise another product.
SILENCED_LOG_PREFIXES = {"lightning.pytorch.utilities.rank_zero": ("💡 Tip:",)}


class DropPrefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet() -> None:
    """Silence the notices above; safe to call more than once."""
    for message, module in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)
    for name, prefixes in SILENCED_LOG_PREFIXES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropPrefixes) for f in logger.filters):
            logger.addFilter(DropPrefixes(prefixes))

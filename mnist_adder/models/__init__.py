"""The models: plain nets (`nets`), the LightningModules that train them (`module`, `addition`), and
loading a trained one from its checkpoint (`checkpoints`). It stands on `mnist_adder.data`, never on
`mnist_adder.runs`."""

# Where the classes that checkpoints name lived before the library moved into sub-packages. A checkpoint
# written then names its LightningModule (`module_class`) and its nets (`_target_`) by these paths.
FORMER_MODULES = {
    "mnist_adder.module": "mnist_adder.models.module",
    "mnist_adder.addition_module": "mnist_adder.models.addition",
    "mnist_adder.nets": "mnist_adder.models.nets",
}


def current_name(name: str) -> str:
    """A class's dotted path as it is now, e.g. `mnist_adder.nets.CompactCNN` ->
    `mnist_adder.models.nets.CompactCNN`."""
    module, _, cls = name.rpartition(".")
    return f"{FORMER_MODULES.get(module, module)}.{cls}"

"""CLI commands, one module per capability; each module defines ``register(app)``.

Not a Python API: the commands are thin layers over the recipes (``memlens.run`` and each
capability's ``run``), so this package exports nothing (the modules are listed in
:data:`memlens.cli.COMMAND_MODULES`).
"""

__all__: list[str] = []

"""CLI commands, one module per capability; each module defines ``register(app)``."""

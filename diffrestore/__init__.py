"""diffrestore: audio restoration with diffusion models in JAX/Flax.

The public entry points are `diffrestore.Enhancer` (supervised enhancement) and
`diffrestore.Prior` (unconditional priors of clean audio); the building blocks live in
`diffrestore.audio`, `.sde`, `.models`, `.sampling`, `.losses`, `.convert`, `.data`, `.train`.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Imported lazily so that `import diffrestore` does not pull in Flax/Orbax.
    if name == "Enhancer":
        from diffrestore.enhancer import Enhancer

        return Enhancer
    if name == "Prior":
        from diffrestore.prior import Prior

        return Prior
    raise AttributeError(f"module 'diffrestore' has no attribute {name!r}")


__all__ = ["Enhancer", "Prior", "__version__"]

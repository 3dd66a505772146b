"""Forward processes: score-based speech enhancement SDEs (OU, BBED), Schrödinger bridges, the
flow-matching path (OTFlow) and EDM."""
from diffrestore.sde.base import complex_normal, batch_view
from diffrestore.sde.bbed import BBEDSDE
from diffrestore.sde.ou import OUVESDE, OUVPSDE
from diffrestore.sde.bridge import SBVESDE, SBVPSDE
from diffrestore.sde.edm import EDM
from diffrestore.sde.flow import OTFlow

SDES = {"ouve": OUVESDE, "ouvp": OUVPSDE, "bbed": BBEDSDE, "sbve": SBVESDE, "sbvp": SBVPSDE, "ot_flow": OTFlow, "edm": EDM}


def get_sde(name: str, /, **kwargs):
    """Builds an SDE by its reference name ('ouve', 'ouvp', 'bbed', 'sbve', 'sbvp', 'ot_flow', 'edm').

    Keyword arguments the SDE does not take are ignored, so a flat hyper-parameter
    dict can be passed (like the reference's `**ignored_kwargs`), the config's own `name`
    included: `get_sde(config.sde.name, **config.sde)`.
    """
    import dataclasses

    try:
        cls = SDES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown SDE {name!r}; choose from {sorted(SDES)}") from None
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in fields})


__all__ = ["OUVESDE", "OUVPSDE", "BBEDSDE", "SBVESDE", "SBVPSDE", "OTFlow", "EDM", "SDES", "get_sde", "complex_normal", "batch_view"]

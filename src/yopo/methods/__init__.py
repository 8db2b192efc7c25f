"""Pruning methods. One module per method; conf/method/<name>.yaml names its class."""
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from ..errors import YopoError
from .base import NeuronSelectionMethod, PruneContext, PruningMethod


def build_method(method_cfg) -> PruningMethod:
    """Instantiate the configured method; a bad option surfaces as the method's own clear
    error rather than Hydra's wrapper around it."""
    try:
        return instantiate(method_cfg)
    except InstantiationException as err:
        if isinstance(err.__cause__, YopoError):
            raise err.__cause__ from None
        raise


__all__ = ["NeuronSelectionMethod", "PruneContext", "PruningMethod", "build_method"]

"""The seed's neural models behind the shared estimator API."""

from __future__ import annotations

from .trained import TorchRecommender
from .networks import NetworkConfig, gmf, mlp, neumf


class NeuMF(TorchRecommender):
    """The seed's NeuMF: GMF and MLP branches over rating vectors, joined in one output.

    Example:
        >>> model = NeuMF(factors=30, layers=5, epochs=40)
        >>> (model.config.factors, model.training.epochs)
        (30, 40)
    """

    name = "neumf"
    config_class = NetworkConfig
    builder = staticmethod(neumf)

    def _build(self, train):
        return self.builder(train.user_item, train.scale, self.config, batch_size=self.training.batch_size)


class GMF(NeuMF):
    """The seed's ``NeuCFModel``: element-wise product of user and item projections.

    Example:
        >>> GMF(factors=8).config.factors
        8
    """

    name = "gmf"
    builder = staticmethod(gmf)


class MLP(NeuMF):
    """The seed's ``EncoderMLP``: concatenated projections through dense layers.

    Example:
        >>> MLP(layers=3).config.layers
        3
    """

    name = "mlp"
    builder = staticmethod(mlp)

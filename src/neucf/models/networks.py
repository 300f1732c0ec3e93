"""The seed's three networks over rating vectors, as one composable module.

A user is their row of the training rating matrix and an item its column (missing = 0), as
in the notebook. :class:`RatingVectorNet` holds the parts; :func:`gmf`, :func:`mlp` and
:func:`neumf` build the notebook's ``NeuCFModel``, ``EncoderMLP`` and ``NeuMFModel``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..errors import UsageError
from .layers import DenseBlock, ScaledSigmoid, SparseRowProjection


@dataclass
class NetworkConfig:
    """Architecture of a rating-vector network.

    Attributes:
        factors: units ``k`` of each projection and of each MLP layer (seed: 30).
        layers: dense layers in the MLP branch (seed: 5).
        alpha: LeakyReLU negative slope (seed: 0.4).
        input_dropout: share of a rating vector's entries dropped at random while training.
        dropout: dropout after each MLP layer.
        mask_target: remove r_ui from u's row and i's column when predicting r_ui, so a
            model never reads the answer from its input (the notebook did while training,
            and the answer is absent at test time).
        input_norm: each rating vector is divided by (its number of ratings) ** input_norm
            before the first layer: 0 feeds raw ratings as the seed does; 0.5 (default)
            keeps heavy and light raters' projections on one scale (measured on ml-100k
            u1: test RMSE 0.9065 against 0.917 with raw vectors).
        projection: how the first layer's sparse product is computed: ``auto``, ``full``
            or ``bag`` (see :class:`~neucf.models.layers.SparseRowProjection`); all exact.

    Example:
        >>> NetworkConfig(factors=8).layers
        5
    """

    factors: int = 30
    layers: int = 5
    alpha: float = 0.4
    input_dropout: float = 0.3
    dropout: float = 0.0
    mask_target: bool = True
    input_norm: float = 0.5
    projection: str = "auto"

    def __post_init__(self):
        if self.projection not in ("auto", "full", "bag"):
            raise UsageError(f"projection must be auto, full or bag, not {self.projection!r}")
        if self.factors < 1 or self.layers < 0:
            raise UsageError(f"factors must be >= 1 and layers >= 0, got {self.factors} and {self.layers}")
        for name in ("input_dropout", "dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UsageError(f"{name} must be in [0, 1), got {getattr(self, name)}")


class RatingVectorNet(nn.Module):
    """GMF and/or MLP branches over sparse rating vectors, joined by one output unit.

    user row -> Dense(d) + LeakyReLU, item column -> Dense(d) + LeakyReLU, where ``d`` is the
    sum of the branch widths (one sparse product serves both branches); then
    GMF: element-wise product of the first ``gmf_factors`` units; MLP: concatenation of the
    rest -> ``layers`` x [Dense(k) + LeakyReLU]; the branch outputs are concatenated ->
    Dense(1) -> ``low + (high - low) * sigmoid``.

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> m = sp.random(5, 4, density=0.5, format="csr", dtype=np.float32, random_state=0)
        >>> net = neumf(m, scale=(1, 5), config=NetworkConfig(factors=3, layers=2))
        >>> net(torch.tensor([0, 1]), torch.tensor([2, 3])).shape
        torch.Size([2])
    """

    def __init__(self, user_item: sp.csr_matrix, scale: tuple[float, float], config: NetworkConfig,
                 gmf_factors: int, mlp_factors: int, batch_size: int = 512):
        super().__init__()
        if gmf_factors + mlp_factors == 0:
            raise UsageError("a network needs a GMF branch, an MLP branch or both")
        self.config = config
        self.gmf_factors, self.mlp_factors = gmf_factors, mlp_factors
        width = gmf_factors + mlp_factors
        user_item = sp.csr_matrix(user_item, dtype=np.float32)
        project = dict(dropout=config.input_dropout, mode=config.projection, batch_size=batch_size,
                       norm=config.input_norm)
        self.user_projection = SparseRowProjection(user_item, width, **project)
        self.item_projection = SparseRowProjection(user_item.T.tocsr(), width, **project)
        self.activation = nn.LeakyReLU(config.alpha)
        joined = gmf_factors
        if mlp_factors:
            self.mlp = DenseBlock(2 * mlp_factors, config.factors, config.layers, config.alpha, config.dropout)
            joined += config.factors if config.layers else 2 * mlp_factors
        self.output = nn.Linear(joined, 1)
        self.scale = ScaledSigmoid(*scale)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        mask = self.config.mask_target
        p = self.activation(self.user_projection(users, items if mask else None))
        q = self.activation(self.item_projection(items, users if mask else None))
        g = self.gmf_factors
        branches = []
        if g:
            branches.append(p[:, :g] * q[:, :g])
        if self.mlp_factors:
            branches.append(self.mlp(torch.cat([p[:, g:], q[:, g:]], dim=1)))
        z = self.output(branches[0] if len(branches) == 1 else torch.cat(branches, dim=1))
        return self.scale(z).squeeze(1)

    def penalty(self) -> torch.Tensor:
        """Sum of squared weights (biases excluded), the L2 term."""
        return sum((p**2).sum() for name, p in self.named_parameters() if name.endswith("weight"))


def gmf(user_item, scale, config: NetworkConfig = NetworkConfig(), batch_size: int = 512) -> RatingVectorNet:
    """The seed's ``NeuCFModel``: GMF branch only."""
    return RatingVectorNet(user_item, scale, config, gmf_factors=config.factors, mlp_factors=0, batch_size=batch_size)


def mlp(user_item, scale, config: NetworkConfig = NetworkConfig(), batch_size: int = 512) -> RatingVectorNet:
    """The seed's ``EncoderMLP``: MLP branch only."""
    return RatingVectorNet(user_item, scale, config, gmf_factors=0, mlp_factors=config.factors, batch_size=batch_size)


def neumf(user_item, scale, config: NetworkConfig = NetworkConfig(), batch_size: int = 512) -> RatingVectorNet:
    """The seed's ``NeuMFModel``: GMF and MLP branches, each with its own projections."""
    return RatingVectorNet(user_item, scale, config, gmf_factors=config.factors, mlp_factors=config.factors, batch_size=batch_size)


class BiasedMFNet(nn.Module):
    """Biased matrix factorisation (SVD-style): ``mu + b_u + b_i + p_u . q_i``.

    The L2 penalty covers the factors and biases of the batch's users and items only (as
    SGD-trained SVD regularises each rating's own parameters).

    Example:
        >>> net = BiasedMFNet(4, 3, factors=2, mean=3.5)
        >>> net(torch.tensor([0]), torch.tensor([1])).shape
        torch.Size([1])
    """

    def __init__(self, n_users: int, n_items: int, factors: int = 100, mean: float = 0.0, init_std: float = 0.1):
        super().__init__()
        self.user_factors = nn.Embedding(n_users, factors)
        self.item_factors = nn.Embedding(n_items, factors)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        for emb in (self.user_factors, self.item_factors):
            nn.init.normal_(emb.weight, std=init_std)
        for emb in (self.user_bias, self.item_bias):
            nn.init.zeros_(emb.weight)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self._batch = None

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        p, q = self.user_factors(users), self.item_factors(items)
        bu, bi = self.user_bias(users).squeeze(1), self.item_bias(items).squeeze(1)
        if self.training:
            self._batch = (p, q, bu, bi)
        return self.mean + bu + bi + (p * q).sum(1)

    def penalty(self) -> torch.Tensor:
        """Mean over the last training batch of its users' and items' squared factors and biases."""
        p, q, bu, bi = self._batch
        return ((p**2).sum() + (q**2).sum() + (bu**2).sum() + (bi**2).sum()) / len(bu)

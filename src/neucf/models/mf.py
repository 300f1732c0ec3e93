"""Biased matrix factorisation (SVD-style), the strongest classical baseline here."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import UsageError
from ..training import resolve_device, seeded
from .layers import BiasTerms
from .registry import register
from .torch_estimator import TorchRecommender, ridge_with_bias

log = logging.getLogger(__name__)


@dataclass
class MFConfig:
    """Biased MF settings; defaults are Surprise's tuned SVD on ml-100k (100 factors, reg 0.1).

    Examples:
        >>> MFConfig().factors
        100
    """

    factors: int = field(default=100, metadata={"help": "Latent factors per user and item (mf 100)."})
    init_std: float = field(default=0.1, metadata={"help": "Standard deviation of the initial factors."})
    bias_prior: bool = field(
        default=True,
        metadata={
            "help": "Biases start from the data's bias fit and keep its shrinkage (false: from 0, shrunk by l2)."
        },
    )

    def __post_init__(self):
        if self.factors < 1:
            raise UsageError(f"factors must be >= 1, got {self.factors}")


class BiasedMFNet(nn.Module):
    """Biased matrix factorisation (SVD-style): ``mu + b_u + b_i + p_u . q_i``.

    The L2 penalty covers the factors and biases of the batch's users and items only (as
    SGD-trained SVD regularises each rating's own parameters). ``sparse``: the factors'
    gradients hold the batch's rows only (for SGD; Adam takes dense ones). Given ``baseline``
    (:class:`~neucf.models.layers.BiasTerms`), the biases are those instead: they start
    from the data's bias fit and keep its shrinkage.

    Examples:
        >>> net = BiasedMFNet(4, 3, factors=2, mean=3.5)
        >>> net(torch.tensor([0]), torch.tensor([1])).shape
        torch.Size([1])
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        factors: int = 100,
        mean: float = 0.0,
        init_std: float = 0.1,
        baseline: BiasTerms | None = None,
        sparse: bool = False,
    ):
        super().__init__()
        self.user_factors = nn.Embedding(n_users, factors, sparse=sparse)
        self.item_factors = nn.Embedding(n_items, factors, sparse=sparse)
        for emb in (self.user_factors, self.item_factors):
            nn.init.normal_(emb.weight, std=init_std)
        if baseline is None:
            baseline = BiasTerms(mean, np.zeros(n_users), np.zeros(n_items), np.ones(n_users), np.ones(n_items), 0, 0)
            self.shrunk_biases = False
        else:
            self.shrunk_biases = True
        self.baseline = baseline

    @property
    def mean(self) -> torch.Tensor:
        return self.baseline.mean

    def _gather(self, users, items):
        return self.user_factors(users), self.item_factors(items), *self.baseline.biases(users, items)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._combine(*self._gather(users, items))

    def _combine(self, p, q, bu, bi) -> torch.Tensor:
        return self.mean + bu + bi + (p * q).sum(1)

    def predict_and_penalty(
        self, users: torch.Tensor, items: torch.Tensor, l2: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions and the L2 term: ``l2`` x the batch's squared factors and biases, per rating.

        Both come from one gather of the batch's rows, so the backward scatters into the
        embedding tables once, not twice.
        """
        p, q, bu, bi = self._gather(users, items)
        if self.shrunk_biases:
            penalty = l2 * ((p**2).sum() + (q**2).sum()) / len(users) + self.baseline.penalty(users, items)
        else:
            penalty = l2 * ((p**2).sum() + (q**2).sum() + (bu**2).sum() + (bi**2).sum()) / len(users)
        return self._combine(p, q, bu, bi), penalty


@register("mf")
class MatrixFactorization(TorchRecommender):
    """Biased matrix factorisation, SVD-style: ``mean + b_u + b_i + p_u . q_i``.

    Trained by SGD as Surprise's SVD is. Its per-rating L2 weight, unless given (``l2``), is
    chosen on the validation share among :attr:`l2_candidates` (three fits).

    Examples:
        >>> MatrixFactorization(factors=50, epochs=20).training.epochs
        20
    """

    config_class = MFConfig
    # plain SGD at 0.005 a rating, as Surprise's SVD trains (its lr_all=0.01 on half the squared
    # error): better than Adam on MovieLens, worse on sparse generated sets ("Why the defaults" in the documentation)
    # full_train_share: see TorchRecommender._train_on_all. Patience 10: from small random
    # factors SGD's interaction grows slowly, and validation can stall for several epochs
    # before it does (patience 3 stopped on that plateau on sparse generated sets)
    train_defaults = {
        "optimizer": "sgd", "lr": 0.005, "l2": None, "batch_size": 512, "full_train_share": 0.2, "patience": 10
    }  # fmt: skip
    can_fold_in = True
    # an unset l2 is searched (l2_candidates), not scaled by the data's size
    unused_training: ClassVar[frozenset[str]] = frozenset({"l2_scale"})
    #: the per-rating L2 weights tried on validation when ``l2`` is unset (Surprise's tuned
    #: 0.1 on ml-100k, half and twice it); the best is kept and saved as the model's ``l2``
    l2_candidates: ClassVar[tuple[float, ...]] = (0.1, 0.05, 0.2)

    def _train(self, fit_arrays, valid_arrays, options):
        """With ``l2`` unset, train once per :attr:`l2_candidates` and keep the network of
        lowest validation RMSE (its L2 weight becomes the model's ``l2``): data with many
        rarely rated items want more shrinkage than MovieLens, dense data less. Without a
        validation share (``valid_fraction=0``) the first candidate is used."""
        if self.training.l2 is not None:
            return super()._train(fit_arrays, valid_arrays, options)
        candidates = self.l2_candidates if len(valid_arrays[0]) else self.l2_candidates[:1]
        best, seconds = None, 0.0
        for l2 in candidates:
            self.training = dataclasses.replace(self.training, l2=l2)
            with seeded(self.training.seed, resolve_device(options.device)):  # each as if fitted alone
                super()._train(fit_arrays, valid_arrays, options)
            score, seconds = self.history.best_valid_rmse, seconds + self.history.seconds
            log.info("mf: l2 %g, validation RMSE %.4f", l2, score)
            if best is None or score < best[0]:
                best = (score, l2, self.net, self.history)
        _, l2, self.net, self.history = best
        self.history.seconds = seconds  # the search's cost is the fit's
        self.training = dataclasses.replace(self.training, l2=l2)

    @torch.no_grad()
    def _fold_in(self, items, ratings):
        """The user's factors and bias by regularised least squares against the fixed item
        factors (one ALS half-step, as LensKit folds users in), with the training's per-rating
        L2 weight: minimise sum (r - mu - b_i - b_u - q_i.p)^2 + n * l2 * |p|^2 + reg * b_u^2, where
        reg is the bias fit's user shrinkage (``bias_prior``) or n * l2."""
        net = self.net
        q = net.item_factors.weight[torch.from_numpy(np.asarray(items, dtype=np.int64))].double()
        b_i = net.baseline.item_bias[torch.from_numpy(np.asarray(items, dtype=np.int64))].double()
        y = torch.as_tensor(ratings, dtype=torch.float64) - float(net.mean) - b_i
        l2 = self.training.l2_for(len(self.inputs_[0]))
        return ridge_with_bias(q, y, l2, net.baseline.reg_user if net.shrunk_biases else None)

    @torch.no_grad()
    def _predict_folded(self, state, items) -> np.ndarray:
        p, b_u = state
        index = torch.from_numpy(np.asarray(items, dtype=np.int64))
        q = self.net.item_factors.weight[index].double()
        b_i = self.net.baseline.item_bias[index].double()
        return (float(self.net.mean) + b_u + b_i + q @ p).float().numpy()

    @classmethod
    def search_space(cls, trial) -> dict:
        """Learning rate, batch size, factors and the per-rating L2 weight."""
        params = super().search_space(trial)
        params.update(
            factors=trial.suggest_int("factors", 8, 200, log=True), l2=trial.suggest_float("l2", 1e-3, 0.5, log=True)
        )
        return params

    def _build(self, train):
        baseline = BiasTerms.from_fit(self._input_bias_fit(train), train) if self.config.bias_prior else None
        return BiasedMFNet(
            train.n_users,
            train.n_items,
            self.config.factors,
            float(train.ratings.mean()),
            self.config.init_std,
            baseline,
            # a step's gradient as the batch's 2 x 512 rows, not both whole tables: ML-1M's
            # SGD steps 2.8 -> 1.8 ms (an ad-hoc timing)
            sparse=self.training.optimizer == "sgd",
        )

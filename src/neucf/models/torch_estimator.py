"""The estimator face of models trained by :class:`~neucf.training.Trainer` (MF and the
neural models): parameters split between the architecture config and
:class:`~neucf.training.TrainConfig`, a held-out validation share when none is given, and
persistence of the network."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from ..datasets import Ratings
from ..splits import held_out_mask
from ..training import FitOptions, TrainConfig, Trainer, predict_batches, resolve_device, seeded
from .base import BiasFit, Recommender
from .persistence import sparse_from_state, sparse_state


def ridge_with_bias(
    features: torch.Tensor, targets: torch.Tensor, l2: float, bias_reg: float | None = None
) -> tuple[torch.Tensor, float]:
    """``(w, b)`` minimising ``|y - X w - b|^2 + n l2 |w|^2 + bias_reg b^2`` for ``n`` rows
    (``bias_reg`` None: ``n l2`` as for ``w``), in float64: how a model fits a new user's
    vector and bias against fixed item vectors (one ALS half-step).

    Examples:
        >>> x = torch.tensor([[1.0], [2.0], [3.0]])
        >>> w, b = ridge_with_bias(x, 2 * x[:, 0] + 1, l2=0.0, bias_reg=0.0)
        >>> round(float(w[0]), 6), round(b, 6)
        (2.0, 1.0)
    """
    x = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], dim=1)
    shrink = torch.full((x.shape[1],), len(features) * l2, dtype=torch.float64)
    if bias_reg is not None:
        shrink[-1] = bias_reg
    solution = torch.linalg.solve(x.T @ x + torch.diag(shrink), x.T @ targets.double())
    return solution[:-1], float(solution[-1])


class TorchRecommender(Recommender):
    """A model whose network is trained by :class:`~neucf.training.Trainer`.

    Keyword arguments are shared out between the model's architecture config and
    :class:`~neucf.training.TrainConfig` by name; ``train_defaults`` are the family's own
    training defaults (a parameter left unset keeps them).

    Examples:
        >>> from neucf.models import NeuMF
        >>> model = NeuMF(factors=16, epochs=10)
        >>> (model.config.factors, model.training.epochs)
        (16, 10)
    """

    fitted_by: ClassVar[str] = "gradient"
    train_defaults: ClassVar[dict] = {}
    #: :class:`~neucf.training.TrainConfig` settings a model's training has no use for: not
    #: taken as parameters, not saved
    unused_training: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def parameters(cls) -> dict[str, dataclasses.Field]:
        """Architecture parameters, then the training parameters it uses (``seed`` is the
        model's own argument)."""
        own = super().parameters()
        skip = {"seed", *cls.unused_training}
        training = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name not in skip}
        return {**own, **training}

    @classmethod
    def search_space(cls, trial) -> dict:
        """Learning rate and batch size; families add their own parameters."""
        return {
            "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [256, 512, 1024, 2048, 4096]),
        }

    @classmethod
    def unregularised(cls) -> dict:
        """No L2 and no early stopping."""
        return {"l2": 0.0, "patience": 0}

    def _configure(self, params: dict) -> None:
        arch_names = {f.name for f in dataclasses.fields(self.config_class)}
        self.config = self.config_class(**{k: v for k, v in params.items() if k in arch_names})
        train = {k: v for k, v in params.items() if k not in arch_names}
        self.training = TrainConfig(**{**self.train_defaults, **train, "seed": self.seed})

    def get_params(self) -> dict:
        """Architecture and training parameters (without the seed, which is saved apart)."""
        training = {k: v for k, v in dataclasses.asdict(self.training).items() if k in self.parameters()}
        return {**dataclasses.asdict(self.config), **training}

    def _build(self, train: Ratings) -> torch.nn.Module:
        raise NotImplementedError

    def _attribute_inputs(self) -> dict[str, float]:
        """Per side (``"user"``, ``"item"``), the scale at which the network reads that
        side's attribute features beside its ratings (a side left out or at 0: none)."""
        return {}

    def _row_features(self, train: Ratings) -> dict[str, sp.csr_matrix | None]:
        """Per side, the attribute features of the network's rows (``train``'s ids, each
        attribute table's own encoding times the side's scale; None: not read)."""
        out = {}
        for side, scale in self._attribute_inputs().items():
            table, ids = getattr(train, f"{side}_attributes"), getattr(train, f"{side}_ids")
            # a table without features (no column) reaches the network, which reads none of it
            out[side] = None if table is None or not scale else table.features(ids).astype(np.float32) * scale
        return out

    def _network_features(self) -> dict[str, sp.csr_matrix | None]:
        """The features a :meth:`_build` hands its network: those :meth:`_fit` kept (and a
        model file restores); none for a network built without a fit, as tests build them."""
        return getattr(self, "row_features_", {})

    def _fit(self, train: Ratings, valid: Ratings | None, options: FitOptions) -> None:
        self.row_features_ = self._row_features(train)
        cfg = self.training
        arrays = (train.users, train.items, train.ratings)
        if valid is not None and len(valid):
            self.held_out_ = None
            fit_arrays, valid_arrays = arrays, (valid.users, valid.items, valid.ratings)
        else:
            self.held_out_ = held_out_mask(len(train), cfg.seed, cfg.valid_fraction)
            fit_arrays = tuple(a[~self.held_out_] for a in arrays)
            valid_arrays = tuple(a[self.held_out_] for a in arrays)
        # the ratings the network reads as input (see reads_held_out)
        self.inputs_held_out_ = self.reads_held_out
        self.inputs_ = arrays if self.inputs_held_out_ else fit_arrays
        device = resolve_device(options.device)
        with seeded(cfg.seed, device):
            self._train(fit_arrays, valid_arrays, options)
            if self.held_out_ is not None:
                self._train_on_all(arrays, options)
                self._refit_biases(arrays)
        self.net.to("cpu")

    @property
    def reads_held_out(self) -> bool:
        """Whether the network may read the held-out share's ratings as inputs while they
        judge it (False here; the rating-vector networks that mask each target say True): a
        network that never sees a rating in the input that predicts it can read every
        training rating, and validation then judges it as its training steps were, and
        test pairs as well."""
        return False

    def _train(self, fit_arrays, valid_arrays, options: FitOptions) -> None:
        """Build the network and train it on ``fit_arrays``, stopping early on
        ``valid_arrays`` (sets ``net`` and ``history``; models that search a setting on
        validation override it)."""
        self.net = self._build(self._input_ratings())
        self.history = Trainer(self.training, options).fit(self.net, fit_arrays, valid_arrays)

    def _train_on_all(self, arrays, options: FitOptions) -> None:
        """After early stopping on the held-out share, train the best network on all of train
        for ``full_train_share`` of its best epoch count (rounded up; see
        :class:`~neucf.training.TrainConfig`), so that the held-out ratings reach the weights
        too: it is the held-out ratings that help, not the extra epochs ("Why the defaults" in the documentation)."""
        epochs = math.ceil(self.training.full_train_share * self.history.best_epoch)
        if epochs == 0:
            return
        cfg = dataclasses.replace(self.training, epochs=epochs, patience=0)
        on_all = Trainer(cfg, dataclasses.replace(options, callbacks=())).fit(self.net, arrays)
        self.history.full_train_epochs = epochs
        self.history.seconds += on_all.seconds

    @torch.no_grad()
    def _refit_biases(self, arrays) -> None:
        """Solve the network's bias terms again on all of train, its held-out share
        included, the rest of the network as trained (one least-squares fit of ``mean + b_u +
        b_i`` to ``r - f(u, i)`` with the terms' own shrinkage), when early stopping held a
        share out. Held out, 5% of the ratings never reached the biases, whose estimate is
        what a sparse user's or item's prediction rests on most ("Why the defaults" in the documentation). The
        validation RMSE in the history is that of the network before this step. Only for
        bias terms penalised with the bias fit's shrinkage (``shrunk_biases``; not ``mf``'s
        with ``bias_prior=false``, which its L2 holds instead)."""
        baseline = getattr(self.net, "baseline", None)
        if baseline is None or not self.net.shrunk_biases:
            return
        device = next(self.net.parameters()).device
        users, items = (torch.as_tensor(a).to(device) for a in arrays[:2])  # widened batch by batch
        interaction = predict_batches(self.net, users, items) - baseline(users, items)
        target = np.asarray(arrays[2], dtype=np.float64) - interaction.double().cpu().numpy()
        ratings = Ratings(
            users=arrays[0], items=arrays[1], ratings=target, **self._trained_ids(), scale=self.scale,
        )  # fmt: skip
        fit = BiasFit.of(ratings, baseline.reg_user, baseline.reg_item)
        baseline.mean.fill_(fit.mean)
        baseline.user_bias.copy_(torch.from_numpy(fit.user_bias))
        baseline.item_bias.copy_(torch.from_numpy(fit.item_bias))
        self._sides = None  # what attribute towers score through changed

    def _predict_index(self, users, items):
        pred = predict_batches(self.net, torch.from_numpy(users), torch.from_numpy(items))
        return pred.to(torch.float32).cpu().numpy()

    def _model_inputs(self):
        """The ratings the network reads: all of train where it reads the held-out share
        (:attr:`reads_held_out` when fitted), else train less that share."""
        return self.inputs_

    @property
    def held_out_validation(self) -> bool:
        """Whether early stopping used a held-out share of train (no validation part was given)."""
        return self.held_out_ is not None

    def _input_bias_fit(self, inputs: Ratings) -> BiasFit:
        """The bias fit of the network's input ratings less the held-out share (which
        validation judges, so they stay out of the biases it is judged with): the one
        :meth:`fit` made for the fallback when they are the very ratings it was made from
        (all of train: a validation part was given), else their own."""
        if getattr(self, "held_out_", None) is not None and getattr(self, "inputs_held_out_", False):
            inputs = inputs.subset(np.flatnonzero(~self.held_out_))
        fit, fitted_on = getattr(self, "bias_fit_", None), getattr(self, "train_", ())
        same = len(fitted_on) == 3 and all(
            a is b for a, b in zip((inputs.users, inputs.items, inputs.ratings), fitted_on)
        )
        return fit if fit is not None and same else BiasFit.of(inputs)

    def _input_ratings(self) -> Ratings:
        users, items, values = self.inputs_
        return Ratings(users=users, items=items, ratings=values, **self._trained_ids(), scale=self.scale)

    def _state(self):
        held = None if self.held_out_ is None else torch.from_numpy(self.held_out_)
        features = {side: None if m is None else sparse_state(m) for side, m in self.row_features_.items()}
        return {
            "weights": self.net.state_dict(), "held_out": held, "inputs_held_out": self.inputs_held_out_,
            "row_features": features,
        }  # fmt: skip

    def _restore(self, state, device: str):
        self.held_out_ = None if state["held_out"] is None else state["held_out"].numpy()
        # files of neucf 0.5 and earlier: their networks read train less the held-out share
        self.inputs_held_out_ = state.get("inputs_held_out", False)
        reads_all = self.held_out_ is None or self.inputs_held_out_
        self.inputs_ = self.train_ if reads_all else tuple(a[~self.held_out_] for a in self.train_)
        # files of neucf 0.13 and earlier: no attribute features read beside the ratings
        saved = state.get("row_features") or {}
        self.row_features_ = {side: None if m is None else sparse_from_state(m) for side, m in saved.items()}
        self.net = self._build(self._input_ratings())
        self.net.to(dtype=self.training.torch_dtype())
        self.net.load_state_dict(state["weights"])
        self.net.to(resolve_device(device))
        self.net.eval()

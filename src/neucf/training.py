"""How models learn: mini-batch Adam on MSE + L2, validation every epoch, early stopping.

:class:`TrainConfig` holds what shapes the learnt model (saved with it); :class:`FitOptions`
holds how a fit runs (device, progress bar, callbacks), which never changes the numbers
beyond the device's arithmetic and is not saved.

Examples:
    >>> cfg = TrainConfig(epochs=5, batch_size=128, seed=1)
    >>> (cfg.lr, cfg.patience)
    (0.003, 3)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from .errors import TrainingError, UsageError

log = logging.getLogger(__name__)


def help_metadata(text: str) -> dict:
    """A configuration field's ``metadata``: the help line the command line shows for it.

    Examples:
        >>> help_metadata("Dropout on the inputs.")
        {'help': 'Dropout on the inputs.'}
    """
    return {"help": text}


@dataclass
class TrainConfig:
    """Optimisation settings shared by every model trained by gradient.

    Attributes:
        epochs: most passes over the training ratings.
        batch_size: ratings per Adam step.
        lr: Adam's learning rate.
        l2: weight of the L2 penalty ``l2 * sum(W**2)`` added to the mean squared error.
            Unset (None): ``l2_scale / n`` for ``n`` training ratings, so that the prior on
            the weights keeps one strength whatever the data's size (the loss is a mean over
            ratings; a constant weight would regularise large data ever harder).
            ``autorec`` and ``mf`` read an unset weight their own way (their docstrings).
        l2_scale: the unset ``l2``'s strength, ``l2 = l2_scale / n``: 0.75 by default, 3 for
            NeuMF and GMF, whose nearly linear projections take a stronger prior (``mlp``'s
            tower, which starts learning slowly, stays at its bias baseline under it;
            measurements: the documentation's "Why the defaults").
        patience: stop after this many epochs without a better validation RMSE, then restore
            the best weights. 0 disables early stopping.
        min_steps: early stopping waits until this many optimiser steps were taken (as
            Lightning's ``min_steps``). For a network that sits on a plateau for some dozens
            of steps before it learns (``mlp``'s deep tower, whose output starts at zero) on
            small data, where an epoch is a few steps. Not a default elsewhere: on small,
            sparse data the extra epochs let a noisy validation pick an over-fitted epoch.
        steps_per_epoch: the most optimiser steps in an epoch (0: no limit). On data with
            more than ``batch_size * steps_per_epoch`` training ratings the batch grows to
            ``n / steps_per_epoch`` and Adam's learning rate by the square root of that growth
            (the square-root rule of large-batch training), so an epoch is a fixed number of
            steps whatever the data's size: where a step's cost is the whole input matrix's
            (the rating-vector networks), an epoch's cost then grows linearly with the data,
            not quadratically. See :meth:`batch_for` and :meth:`lr_for`.
        optimizer: ``adam`` (default) or ``sgd`` (plain stochastic gradient descent, as
            Surprise's SVD trains). With ``sgd``, ``lr`` is the step per rating, whatever the
            batch (the loss is a mean over the batch, so the optimiser's rate is ``lr`` x
            the batch size): ``mf``'s 0.005 on this loss (squared error, not half of it) is
            Surprise's ``lr_all=0.01``.
        seed: seeds weight initialisation, shuffling and dropout.
        dtype: ``float32`` (default) or ``float64``.
        valid_fraction: share of train held out for early stopping when no validation part is
            given (seeded).
        average: keep an exponential moving average of the weights, ``average`` its decay per
            step (0.97: about the last 30 steps), and validate and keep the average instead
            of the last weights (Polyak averaging); training goes on from the last weights.
            0 (default) is off; NeuMF and GMF use 0.97.
        full_train_share: after early stopping on such a held-out share, the best network
            trains on for this share of its best epoch count (rounded up) on all of train,
            the held-out ratings included, so that they reach the weights too (0: off). For
            optimisers without state (``mf``'s SGD: 0.2); Adam would restart its moments
            there, and its first steps are the largest.

    Examples:
        >>> TrainConfig().torch_dtype()
        torch.float32
    """

    epochs: int = field(default=60, metadata=help_metadata("Most epochs."))
    batch_size: int = field(default=2048, metadata=help_metadata("Ratings per step."))
    lr: float = field(default=3e-3, metadata=help_metadata("Adam learning rate."))
    l2: float | None = field(
        default=None,
        metadata=help_metadata(
            "L2 weight (unset: from the data: l2_scale / n ratings; autorec reg / 2n; mf searched on validation)."
        ),
    )
    l2_scale: float = field(
        default=0.75, metadata=help_metadata("With --l2 unset, the L2 weight is this / n training ratings.")
    )
    patience: int = field(default=3, metadata=help_metadata("Early-stopping patience in epochs (0: off)."))
    min_steps: int = field(default=0, metadata=help_metadata("Early stopping waits for this many optimiser steps."))
    steps_per_epoch: int = field(
        default=0,
        metadata=help_metadata("Most steps per epoch; larger data grow the batch and lr (sqrt) instead (0: off)."),
    )
    optimizer: str = field(default="adam", metadata=help_metadata("adam or sgd."))
    seed: int = 0
    dtype: str = field(default="float32", metadata=help_metadata("float32 or float64."))
    valid_fraction: float = field(
        default=0.05, metadata=help_metadata("Share of train held out when a split has no validation part.")
    )
    average: float = field(
        default=0.0,
        metadata=help_metadata("Decay per step of a moving average of the weights, validated and kept (0: off)."),
    )
    full_train_share: float = field(
        default=0.0,
        metadata=help_metadata(
            "After early stopping on a held-out share: this share of the best epochs more on all of train."
        ),
    )

    def __post_init__(self):
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"learning rate must be a positive number, got {self.lr}")
        if self.l2 is not None and not (self.l2 >= 0 and math.isfinite(self.l2)):
            raise UsageError(f"l2 must be >= 0, got {self.l2}")
        if not (self.l2_scale >= 0 and math.isfinite(self.l2_scale)):
            raise UsageError(f"l2_scale must be >= 0, got {self.l2_scale}")
        if self.steps_per_epoch < 0:
            raise UsageError(f"steps_per_epoch must be >= 0, got {self.steps_per_epoch}")
        if self.patience < 0:
            raise UsageError(f"patience must be >= 0, got {self.patience}")
        if self.min_steps < 0:
            raise UsageError(f"min_steps must be >= 0, got {self.min_steps}")
        if self.optimizer not in ("adam", "sgd"):
            raise UsageError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not 0 < self.valid_fraction < 1:
            raise UsageError(f"valid_fraction must be between 0 and 1, got {self.valid_fraction}")
        if not 0 <= self.average < 1:
            raise UsageError(f"average must be in [0, 1), got {self.average}")
        if not (self.full_train_share >= 0 and math.isfinite(self.full_train_share)):
            raise UsageError(f"full_train_share must be >= 0, got {self.full_train_share}")

    def l2_for(self, n_ratings: int) -> float:
        """The L2 weight used for ``n_ratings`` training ratings (see ``l2``).

        Examples:
            >>> TrainConfig().l2_for(75_000), TrainConfig(l2=0.1).l2_for(75_000)
            (1e-05, 0.1)
        """
        return self.l2_scale / max(n_ratings, 1) if self.l2 is None else self.l2

    def batch_for(self, n_ratings: int) -> int:
        """The batch used on ``n_ratings`` training ratings (see ``steps_per_epoch``).

        Examples:
            >>> cfg = TrainConfig(batch_size=8192, steps_per_epoch=32)
            >>> cfg.batch_for(75_000), cfg.batch_for(900_000)
            (8192, 28125)
        """
        if not self.steps_per_epoch:
            return self.batch_size
        return max(self.batch_size, math.ceil(n_ratings / self.steps_per_epoch))

    def lr_for(self, n_ratings: int) -> float:
        """The optimiser's learning rate on ``n_ratings`` training ratings: Adam's ``lr``
        grown by the square root of the batch's growth (see ``steps_per_epoch``); SGD's
        per-rating ``lr`` times the batch (see ``optimizer``).

        Examples:
            >>> round(TrainConfig(batch_size=8192, lr=0.01, steps_per_epoch=32).lr_for(900_000), 4)
            0.0185
            >>> TrainConfig(batch_size=512, lr=0.005, optimizer="sgd").lr_for(900_000)
            2.56
        """
        batch = self.batch_for(n_ratings)
        if self.optimizer == "sgd":
            return self.lr * batch
        return self.lr * math.sqrt(batch / self.batch_size)

    def torch_dtype(self) -> torch.dtype:
        """``torch.float32`` or ``torch.float64``."""
        return torch.float64 if self.dtype == "float64" else torch.float32


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device named by ``device``; ``auto`` picks CUDA when available.

    Examples:
        >>> resolve_device("cpu").type
        'cpu'
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    if resolved.type not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    return resolved


@dataclass(frozen=True)
class FitOptions:
    """How a fit runs, apart from what it learns: not saved with the model.

    Attributes:
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``...
        progress: show a progress bar (train MSE, train MSE + reg, validation RMSE) and log
            one line per epoch.
        callbacks: called with each epoch's :class:`EpochStats` (Optuna's pruning raises from there).

    Examples:
        >>> FitOptions().device
        'auto'
    """

    device: str = "auto"
    progress: bool = False
    callbacks: tuple[Callable, ...] = ()


@dataclass
class EpochStats:
    """One epoch's figures (a ranking objective's have no MSE or validation RMSE, but their
    loss and the validation NDCG@10 of the lists, ``valid_ndcg``).

    Examples:
        >>> EpochStats(1, 1.0, 1.1, 0.9, 0.5).epoch
        1
    """

    epoch: int
    train_mse: float
    train_loss: float
    valid_rmse: float
    seconds: float
    valid_ndcg: float | None = None


@dataclass
class History:
    """Per-epoch figures of a training run and where it stopped; ``full_train_epochs``: the
    epochs trained on all of train after it (``TrainConfig.full_train_share``), not in ``epochs``.

    Examples:
        >>> h = History(epochs=[EpochStats(1, 1.0, 1.1, 0.9, 0.5)], best_epoch=1)
        >>> History.from_dict(h.to_dict()) == h
        True
    """

    epochs: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_rmse: float = float("nan")
    seconds: float = 0.0
    stopped_early: bool = False
    full_train_epochs: int = 0
    best_valid_ndcg: float = float("nan")

    def to_dict(self) -> dict:
        """Plain values (for JSON and model files)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        """The inverse of :meth:`to_dict`."""
        return cls(**{**data, "epochs": [EpochStats(**e) for e in data["epochs"]]})

    def rows(self) -> list[dict]:
        """The epochs as dicts (for tables and plots)."""
        return [dataclasses.asdict(e) for e in self.epochs]


@dataclass(frozen=True)
class World:
    """This process's place in data-parallel training: its ``rank`` among ``size`` processes
    (1 when it trains alone). Only rank 0 writes files and shows progress.

    Examples:
        >>> World.current()
        World(rank=0, size=1)
    """

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        """The process group this process belongs to (torch.distributed), or a world of one."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


def join_world(device: str = "auto") -> World:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``MASTER_ADDR``...): NCCL on CUDA (one GPU per process, by ``LOCAL_RANK``), gloo
    on CPU. Without torchrun (``WORLD_SIZE`` unset or 1) the process stays alone.

    Examples:
        >>> join_world("cpu")  # not started by torchrun
        World(rank=0, size=1)
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available() or dist.is_initialized():
        return World.current()
    if resolve_device(device).type == "cuda":
        local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local_rank >= gpus:
            raise UsageError(
                f"this machine has {gpus} CUDA GPU(s) but torchrun started more processes on it (local rank "
                f"{local_rank}); use --nproc-per-node {gpus}, or --device cpu for gloo on CPU"
            )
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return World.current()


def leave_world() -> None:
    """Leave the process group :func:`join_world` joined (nothing when alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _Objective(nn.Module):
    """``predict_and_penalty`` as a module's forward, so DistributedDataParallel can wrap it
    (it synchronises gradients of what runs through its own forward)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(
        self, users: torch.Tensor, items: torch.Tensor, l2: float, batch_users=None, batch_items=None, located=None
    ):
        """The rank's share of a step; ``batch_users`` / ``batch_items``: the whole step's
        pairs, for a net whose ``step_state`` takes them (so that every rank hides the same
        targets from its inputs as one process would); ``located``: theirs of the net's
        ``locate``."""
        if batch_users is None or not hasattr(self.net, "step_state"):
            return self.net.predict_and_penalty(users, items, l2)
        state = self.net.step_state(batch_users, batch_items, located)
        return self.net.predict_and_penalty(users, items, l2, state)


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's generators for ``device`` (and the CPU) and give the caller's state back after.

    Weight initialisation and dropout draw from torch's default generators; forking them
    keeps a fit deterministic under ``seed`` without changing the caller's random state.

    Examples:
        >>> before = torch.rand(1); _ = torch.manual_seed(0); a = torch.rand(1)
        >>> with seeded(3, torch.device("cpu")): _ = torch.rand(1)
        >>> _ = torch.manual_seed(0); bool(torch.rand(1) == a)
        True
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


class Trainer:
    """Fits a network that maps (user index, item index) batches to predicted ratings.

    The network must provide ``forward(users, items)`` (predictions) and
    ``predict_and_penalty(users, items, l2)`` (predictions and the regulariser to add to the
    batch's mean squared error, given the L2 weight ``l2``; returned together so that both
    can share one gather).

    Examples:
        >>> from neucf.models import BiasedMFNet
        >>> net = BiasedMFNet(3, 2, factors=2, mean=3.0)
        >>> u, i, r = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 0]), torch.tensor([3.0, 4.0, 5.0])
        >>> Trainer(TrainConfig(epochs=2, batch_size=2)).fit(net, (u, i, r), (u, i, r)).best_epoch > 0
        True
    """

    def __init__(self, config: TrainConfig, options: FitOptions = FitOptions()):
        self.config = config
        self.options = options

    def fit(self, net: nn.Module, train, valid=None) -> History:
        """Train ``net`` on ``train = (users, items, ratings)`` index arrays; ``valid`` (same
        form) drives early stopping. The best weights are restored; returns the history."""
        with _deterministic():
            return self._fit(net, train, valid)

    def _fit(self, net: nn.Module, train, valid) -> History:
        cfg, options = self.config, self.options
        device, dtype = resolve_device(options.device), cfg.torch_dtype()
        net.to(device=device, dtype=dtype)
        # indices stay as given where 32-bit (Ratings' own; each batch is widened as taken):
        # two 64-bit copies of every rating's user and item are 320 MB at ML-25M's size
        users, items, ratings = (torch.as_tensor(a).to(device) for a in train)
        users, items, ratings = _index(users), _index(items), ratings.to(dtype)
        if valid is not None and len(valid[0]) == 0:
            valid = None
        if valid is not None:
            valid = tuple(torch.as_tensor(a).to(device) for a in valid)
            valid = (_index(valid[0]), _index(valid[1]), valid[2].to(dtype))

        generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        # what every step would search its ratings for, found once (see RatingVectorNet.locate)
        located = net.locate(users, items) if hasattr(net, "locate") else None
        n = len(ratings)
        if cfg.batch_for(n) != cfg.batch_size:
            log.info("%d training ratings: batch %d, learning rate %.4g", n, cfg.batch_for(n), cfg.lr_for(n))
        optimizer = _FunctionalOptimizer(net.parameters(), cfg.optimizer, cfg.lr_for(n))
        history = History()
        start = time.perf_counter()
        with _progress(options, max(1, math.ceil(n / cfg.batch_for(n)))) as bar:
            best_state, best = self._epochs(
                net, optimizer, (users, items, ratings, located), valid, device, history, bar, generator
            )
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        history.best_valid_rmse = best if valid is not None else float("nan")
        history.seconds = time.perf_counter() - start
        return history

    def _epochs(self, net, optimizer, train, valid, device, history, bar, generator):
        """The epoch loop over ``train`` (users, items, ratings, and the net's ``locate`` of
        them or None); returns the best weights and their score.

        In a world of several processes (torchrun) every rank draws the same order and takes
        every ``size``-th rating of each batch, so ``batch_size`` is the global batch; each
        rank's loss is weighted by its share, so that DistributedDataParallel's averaged
        gradient is the whole batch's, whatever the number of processes.
        """
        cfg, options = self.config, self.options
        ratings = train[2]
        n = len(ratings)
        batch_size = cfg.batch_for(n)
        n_batches = max(1, math.ceil(n / batch_size))
        l2 = cfg.l2_for(n)
        world = World.current()
        objective = None  # one process: the net itself, its large batches in chunks
        if world.size > 1:
            # the input matrices are buffers every rank builds from the same data: never sent
            ids = (
                [device.index if device.index is not None else torch.cuda.current_device()]
                if device.type == "cuda"
                else None
            )
            with warnings.catch_warnings():
                # torch 2.13 renames the flag, and its replacement still copies every buffer
                # from rank 0 at the start: the input matrices, identical on every rank already
                warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
                objective = DistributedDataParallel(_Objective(net), device_ids=ids, broadcast_buffers=False)
        best_state, best = None, math.inf
        if valid is not None:
            # the starting point is a candidate too: a network that starts as its bias
            # baseline keeps it unless training beats it on validation
            best = rmse_of(net, *valid, batch_size=8192)
            best_state = copy.deepcopy(net.state_dict())
        weights = [p.detach() for p in net.parameters()]  # the parameters' storage, outside autograd
        averaged = [w.clone() for w in weights] if cfg.average else None
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=generator).to(device)
            sum_mse = torch.zeros((), device=device, dtype=torch.float64)
            sum_loss = torch.zeros((), device=device, dtype=torch.float64)
            if bar is not None:
                bar.reset()
                bar.set_description(f"epoch {epoch}/{cfg.epochs}")
            for b in range(n_batches):
                batch = order[b * batch_size : (b + 1) * batch_size]
                idx = batch[world.rank :: world.size]
                share = len(idx) * world.size / len(batch)
                if len(idx) == 0:  # a last batch smaller than the world: this rank adds nothing
                    idx, share = batch[:1], 0.0
                optimizer.zero_grad()
                mse, loss = _backward_in_chunks(net, train, idx, l2, objective, share, batch)
                optimizer.step()
                if averaged is not None:
                    torch._foreach_lerp_(averaged, weights, 1.0 - cfg.average)
                sum_mse += mse.detach() * len(idx) * (share > 0)
                sum_loss += loss.detach() * len(idx) * (share > 0)
                if bar is not None:
                    bar.update()
                    if b % 50 == 0 or b == n_batches - 1:
                        bar.set_postfix_str(_status(sum_mse, sum_loss, b, cfg, n, history), refresh=False)
            if world.size > 1:  # every rank decides on the same figures
                sums = torch.stack([sum_mse, sum_loss]).to(torch.float64)
                dist.all_reduce(sums)
                sum_mse, sum_loss = sums[0], sums[1]
            train_mse = float(sum_mse) / n
            train_loss = float(sum_loss) / n
            if not (math.isfinite(train_mse) and math.isfinite(train_loss)):
                raise TrainingError(
                    f"the training loss became {train_loss} in epoch {epoch}; lower the learning rate "
                    f"(now {cfg.lr:g}) or check the data for extreme values"
                )
            live = None
            if averaged is not None:  # validated, and kept if best, as the average
                live = [w.clone() for w in weights]
                torch._foreach_copy_(weights, averaged)
            valid_rmse = rmse_of(net, *valid, batch_size=8192) if valid is not None else float("nan")
            stats = EpochStats(epoch, train_mse, train_loss, valid_rmse, time.perf_counter() - t0)
            history.epochs.append(stats)
            if bar is not None:
                bar.set_postfix_str(
                    f"train mse {train_mse:.4f} | mse+reg {train_loss:.4f} | valid rmse {valid_rmse:.4f}", refresh=True
                )
            if options.progress:
                log.info(
                    "epoch %d: train mse %.4f, train mse + reg %.4f, valid rmse %.4f (%.2f s)",
                    epoch, train_mse, train_loss, valid_rmse, stats.seconds,
                )  # fmt: skip
            for callback in options.callbacks:
                callback(stats)
            score = valid_rmse if valid is not None else train_loss
            improved = score < best
            if improved:
                best, history.best_epoch = score, epoch
                best_state = copy.deepcopy(net.state_dict())
            if live is not None:  # training goes on from the live weights
                torch._foreach_copy_(weights, live)
            waited = epoch - history.best_epoch >= cfg.patience and epoch * n_batches >= cfg.min_steps
            if not improved and cfg.patience and waited:
                history.stopped_early = True
                break
        return best_state, best


class StepTrainer:
    """Fits a network whose training is a loss per step that it computes itself (a ranking
    objective: a softmax over items, BPR's pairs; an autoencoder's batches of item columns),
    with Adam, early stopping on a validation score, the best weights restored. ``metric``:
    ``"ndcg@10"`` (the lists' NDCG@10, higher is better) or ``"rmse"`` (lower is better; the
    epochs then record it as their validation RMSE).

    ``steps(epoch)`` yields each step's loss (a scalar tensor); ``validate()`` scores the
    network as it stands. ``decay``: an epoch that does not beat the best score multiplies
    the learning rate by this (1: a constant rate); ``patience`` such epochs in a row stop
    training. Deterministic as :class:`Trainer` is (torch's deterministic kernels; the caller
    seeds what it draws), with the same NaN guard and progress bar.

    Examples:
        >>> net = nn.Linear(2, 1)
        >>> x = torch.randn(16, 2)
        >>> steps = lambda epoch: iter([((net(x) - 1.0) ** 2).mean()])
        >>> history = StepTrainer(lr=0.1, epochs=3, patience=0).fit(net, steps, lambda: -float(((net(x) - 1) ** 2).mean()))
        >>> len(history.epochs), history.best_epoch > 0
        (3, True)
    """

    def __init__(
        self,
        lr: float,
        epochs: int,
        patience: int,
        options: FitOptions = FitOptions(),
        steps_per_epoch: int = 0,
        decay: float = 1.0,
        metric: str = "ndcg@10",
    ):
        if metric not in ("ndcg@10", "rmse"):
            raise UsageError(f"metric must be ndcg@10 or rmse, not {metric!r}")
        self.lr, self.epochs, self.patience, self.options = lr, epochs, patience, options
        self.steps_per_epoch, self.decay, self.metric = steps_per_epoch, decay, metric

    def fit(self, net: nn.Module, steps: Callable, validate: Callable[[], float]) -> History:
        """Train ``net`` (see the class docstring); returns the history."""
        with _deterministic():
            return self._fit(net, steps, validate)

    def _fit(self, net, steps, validate) -> History:
        optimizer = _FunctionalOptimizer(net.parameters(), "adam", self.lr)
        history, start = History(), time.perf_counter()
        best, best_state = -math.inf, None
        sign = -1.0 if self.metric == "rmse" else 1.0  # scores are compared as higher-is-better
        with _progress(self.options, max(self.steps_per_epoch, 1)) as bar:
            for epoch in range(1, self.epochs + 1):
                net.train()
                t0, total, n = time.perf_counter(), 0.0, 0
                if bar is not None:
                    bar.reset()
                    bar.set_description(f"epoch {epoch}/{self.epochs}")
                for loss in steps(epoch):
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total, n = total + float(loss.detach()), n + 1
                    if bar is not None:
                        bar.update()
                mean = total / max(n, 1)
                if not math.isfinite(mean):
                    raise TrainingError(
                        f"the training loss became {mean} in epoch {epoch}; lower the learning rate (now {self.lr:g})"
                    )
                net.eval()
                with torch.no_grad():
                    score = float(validate())
                seconds = time.perf_counter() - t0
                if self.metric == "rmse":
                    stats = EpochStats(epoch, float("nan"), mean, score, seconds)
                else:
                    stats = EpochStats(epoch, float("nan"), mean, float("nan"), seconds, score)
                history.epochs.append(stats)
                if bar is not None:
                    bar.set_postfix_str(f"loss {mean:.4f} | valid {self.metric} {score:.4f}", refresh=True)
                if self.options.progress:
                    log.info("epoch %d: loss %.4f, valid %s %.4f (%.2f s)", epoch, mean, self.metric, score, seconds)
                for callback in self.options.callbacks:
                    callback(stats)
                if sign * score > best:
                    best, history.best_epoch = sign * score, epoch
                    best_state = copy.deepcopy(net.state_dict())
                elif self.patience and epoch - history.best_epoch >= self.patience:
                    history.stopped_early = True
                    break
                else:
                    optimizer.lr *= self.decay
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        found = sign * best if best_state is not None else float("nan")
        if self.metric == "rmse":
            history.best_valid_rmse = found
        else:
            history.best_valid_ndcg = found
        history.seconds = time.perf_counter() - start
        return history


class _FunctionalOptimizer:
    """``torch.optim.Adam(fused=True)`` or ``torch.optim.SGD`` with their defaults (``kind``:
    ``adam`` or ``sgd``), through torch's functional forms (``torch.optim.adam.adam``,
    ``torch.optim.sgd.sgd``): the same kernels and the same numbers (tested), without
    ``torch.optim.Optimizer``'s wrappers, which import ``torch._dynamo`` on the first
    optimizer and step: more than a second of every fresh process's fit, as every
    command-line run is ("Why the defaults" in the documentation).

    Adam is fused (one kernel a parameter) where torch has that kernel for the device (CPU
    since torch 2.4, CUDA), else torch's default: an ml-100k u1 NeuMF epoch 6-7% faster
    here than with the default's per-parameter sequence of operations (alternating runs).

    Examples:
        >>> w = nn.Parameter(torch.ones(2))
        >>> opt = _FunctionalOptimizer([w], "sgd", lr=0.5)
        >>> w.sum().backward(); opt.step(); w.tolist()
        [0.5, 0.5]
    """

    def __init__(self, params, kind: str, lr: float):
        self.params = [p for p in params if p.requires_grad]
        self.kind, self.lr = kind, lr
        self.fused = kind == "adam" and bool(self.params) and _has_fused_adam(self.params[0].device)
        # Adam's moments and step counts, made at the first step as torch.optim.Adam does
        self.moments: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = [None] * len(self.params)

    def zero_grad(self) -> None:
        """Drops the gradients (as ``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params, grads = [self.params[i] for i in live], [self.params[i].grad for i in live]
        if self.kind == "sgd":
            sgd(
                params, grads, [None] * len(params),
                weight_decay=0.0, momentum=0.0, lr=self.lr, dampening=0.0, nesterov=False, maximize=False,
            )  # fmt: skip
            return
        for i in live:
            if self.moments[i] is None:
                p = self.params[i]
                zeros = torch.zeros_like(p, memory_format=torch.preserve_format)
                # as torch.optim.Adam: a fused step counts on the device, in float32
                step = (
                    torch.zeros((), dtype=torch.float32, device=p.device)
                    if self.fused
                    else torch.tensor(0.0, dtype=_scalar_dtype())
                )
                self.moments[i] = (zeros, zeros.clone(), step)
        avg, avg_sq, steps = zip(*[self.moments[i] for i in live]) if live else ((), (), ())
        adam(
            params, grads, list(avg), list(avg_sq), [], list(steps),
            fused=self.fused or None,
            amsgrad=False, beta1=0.9, beta2=0.999, lr=self.lr, weight_decay=0.0, eps=1e-8, maximize=False,
        )  # fmt: skip


def _has_fused_adam(device: torch.device) -> bool:
    """Whether torch has a fused Adam kernel for ``device`` (CPU: torch 2.4 and later)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # an older torch: none it would name
        return False
    return device.type in _get_fused_kernels_supported_devices()


def _scalar_dtype() -> torch.dtype:
    """Adam's step counter's dtype, as torch.optim.Adam makes it (float64 under a float64 default)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


CHUNK = 65_536
"""Most ratings whose activations a training step holds at once (see :func:`_backward_in_chunks`)."""


def _backward_in_chunks(
    net: nn.Module, train, idx, l2: float, objective: nn.Module | None = None, weight: float = 1.0, batch=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-propagate one batch's loss (mean squared error + penalty); returns both.

    ``train``: (users, items, ratings, located) of all the training ratings, ``located``
    the net's ``locate`` of them or None; ``idx``: the batch's. ``objective`` (a
    DistributedDataParallel module around ``net``'s ``predict_and_penalty``) takes the batch
    whole, and its loss is back-propagated times ``weight`` (the rank's share); ``batch``:
    the whole step's ratings, of which ``idx`` is the rank's share.

    On a network whose ``step_state(users, items, located)`` gives the work every rating
    of a step shares (the rating-vector networks: each row's product with the first layer),
    that work is done once, and a batch of more than :data:`CHUNK` ratings is taken in
    chunks: each chunk's share of the loss is back-propagated to the shared work, and that
    is back-propagated once at the end. The gradient is the whole batch's (up to float
    rounding), and memory holds one chunk's activations, however large the batch (ML-25M-sized
    data: a million ratings a step). A single process only: under DistributedDataParallel
    each rank's share goes through its forward whole.
    """
    users, items, ratings, located = train
    at = lambda rows: None if located is None else located[rows]  # noqa: E731
    u, i = users[idx].long(), items[idx].long()
    state = None
    if objective is None and hasattr(net, "step_state"):
        state = net.step_state(u, i, at(idx))
    if state is None or len(idx) <= CHUNK:
        if objective is None:
            shared = () if state is None else (state,)
            pred, penalty = net.predict_and_penalty(u, i, l2, *shared)
        else:
            whole = idx if batch is None else batch
            pred, penalty = objective(u, i, l2, users[whole].long(), items[whole].long(), at(whole))
        mse = torch.mean((pred - ratings[idx]) ** 2)
        loss = mse + penalty
        (loss * weight if weight != 1.0 else loss).backward()
        return mse, loss
    leaves = tuple(t if t is None else t.detach().requires_grad_(t.requires_grad) for t in state)
    squares = penalties = torch.zeros((), dtype=ratings.dtype, device=ratings.device)
    for start in range(0, len(idx), CHUNK):
        chunk = idx[start : start + CHUNK]
        pred, penalty = net.predict_and_penalty(users[chunk].long(), items[chunk].long(), l2, leaves)
        square = ((pred - ratings[chunk]) ** 2).sum()
        # the penalty is a mean over the chunk (its L2 part a constant): weighted by the
        # chunk's share, the shares add up to the whole batch's
        (square / len(idx) + penalty * (len(chunk) / len(idx))).backward()
        squares = squares + square.detach()
        penalties = penalties + penalty.detach() * (len(chunk) / len(idx))
    shared = [(t, leaf.grad) for t, leaf in zip(state, leaves) if leaf is not None and leaf.grad is not None]
    torch.autograd.backward([t for t, _ in shared], [g for _, g in shared])
    mse = squares / len(idx)
    return mse, mse + penalties


def _index(t: torch.Tensor) -> torch.Tensor:
    """Indices as 32 or 64-bit integers: as given where they are, else 64-bit."""
    return t if t.dtype in (torch.int32, torch.int64) else t.long()


@contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic kernels while training, the caller's settings given back after.

    Multi-threaded scatter-adds (the backward of gathering a batch's rows) sum in a varying
    order; deterministic kernels make the same seed give the same numbers. Without filling
    new memory: in deterministic mode torch writes NaN into every new tensor, in case code
    reads memory it never wrote, which neucf's does not (a test checks that filling changes
    no number); on ML-1M that is 7 fills of every input entry a step, 3-6% of it."""
    fill = getattr(torch.utils, "deterministic", None)  # torch >= 2.1
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_fill = fill.fill_uninitialized_memory if fill is not None else None
    _set_deterministic(True, warn_only=True)
    if fill is not None:
        fill.fill_uninitialized_memory = False
    try:
        yield
    finally:
        _set_deterministic(previous, warn_only=previous_warn)
        if fill is not None:
            fill.fill_uninitialized_memory = previous_fill


def _set_deterministic(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without its import of ``torch._inductor``
    (seconds on first use, more than a whole ml-100k fit) to set a compiler flag that
    neucf never uses; the public function where the private switch is missing."""
    switch = getattr(torch._C, "_set_deterministic_algorithms", None)
    if switch is None:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        switch(mode, warn_only=warn_only)


def _status(sum_mse, sum_loss, b, cfg, n, history) -> str:
    seen = min((b + 1) * cfg.batch_for(n), n)
    last = history.epochs[-1].valid_rmse if history.epochs else float("nan")
    return f"train mse {float(sum_mse) / seen:.4f} | mse+reg {float(sum_loss) / seen:.4f} | valid rmse {last:.4f}"


def _progress(options: FitOptions, total: int):
    """A progress bar (closed, and its line cleared, however the loop ends), or None."""
    if not options.progress:
        return nullcontext()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="batch", leave=False, dynamic_ncols=True)


@torch.no_grad()
def predict_batches(net: nn.Module, users: torch.Tensor, items: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Predictions of ``net`` in eval mode, in batches (no dropout, no gradient), on the net's
    device; integer indices of any width (each batch is widened to 64 bits)."""
    was_training = net.training
    if was_training:
        net.eval()
    device = next(net.parameters()).device
    users, items = users.to(device), items.to(device)
    out = torch.cat(
        [
            net(users[s : s + batch_size].long(), items[s : s + batch_size].long())
            for s in range(0, len(users), batch_size)
        ]
    )
    if was_training:
        net.train()
    return out


def rmse_of(net: nn.Module, users, items, ratings, batch_size: int = 8192) -> float:
    """RMSE of ``net`` on index tensors."""
    pred = predict_batches(net, users, items, batch_size)
    return float(torch.sqrt(torch.mean((pred.double() - ratings.double()) ** 2)))

"""How models learn: mini-batch Adam on MSE + L2, validation every epoch, early stopping.

Example:
    >>> cfg = TrainConfig(epochs=5, batch_size=128, seed=1)
    >>> (cfg.lr, cfg.patience)
    (0.001, 3)
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .errors import TrainingError, UsageError


@dataclass
class TrainConfig:
    """Optimisation settings shared by every trained model.

    Attributes:
        epochs: most passes over the training ratings.
        batch_size: ratings per Adam step.
        lr: Adam's learning rate.
        l2: weight of the L2 penalty ``l2 * sum(W**2)`` added to the mean squared error.
        patience: stop after this many epochs without a better validation RMSE, then restore
            the best weights. 0 disables early stopping.
        seed: seeds weight initialisation, shuffling and dropout.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``...
        dtype: ``float32`` (default) or ``float64``.
        progress: show a progress bar (train MSE, train MSE + reg, validation RMSE).
        valid_fraction: share of train held out for early stopping when no validation part is
            given (seeded).

    Example:
        >>> TrainConfig(device="cpu").torch_device().type
        'cpu'
    """

    epochs: int = 60
    batch_size: int = 2048
    lr: float = 3e-3
    l2: float = 1e-5
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    progress: bool = False
    valid_fraction: float = 0.05

    def __post_init__(self):
        if self.epochs < 1:
            raise UsageError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"learning rate must be a positive number, got {self.lr}")
        if not (self.l2 >= 0 and math.isfinite(self.l2)):
            raise UsageError(f"l2 must be >= 0, got {self.l2}")
        if self.dtype not in ("float32", "float64"):
            raise UsageError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not 0 < self.valid_fraction < 1:
            raise UsageError(f"valid_fraction must be between 0 and 1, got {self.valid_fraction}")

    def torch_device(self) -> torch.device:
        """The device to train on; ``auto`` picks CUDA when available."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise UsageError(f"unknown device {self.device!r}; use auto, cpu or cuda") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
        return device

    def torch_dtype(self) -> torch.dtype:
        """``torch.float32`` or ``torch.float64``."""
        return torch.float64 if self.dtype == "float64" else torch.float32


@dataclass
class History:
    """Per-epoch figures of a training run and where it stopped.

    Example:
        >>> History().best_epoch
        0
    """

    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_rmse: float = float("nan")
    seconds: float = 0.0
    stopped_early: bool = False


class Trainer:
    """Fits a network that maps (user index, item index) batches to predicted ratings.

    The network must provide ``forward(users, items)`` and ``penalty()`` (the L2 sum of
    squares it wants regularised). ``callback(epoch_row)``, if given, is called after every
    epoch with that epoch's figures (Optuna's pruning raises from there).

    Example:
        >>> trainer = Trainer(TrainConfig(epochs=1))  # doctest: +SKIP
        >>> history = trainer.fit(net, (u, i, r), valid=(vu, vi, vr))  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig):
        self.config = config

    def fit(self, net: nn.Module, train, valid=None, callback=None) -> History:
        """Train ``net`` on ``train = (users, items, ratings)`` index arrays; ``valid`` (same
        form) drives early stopping. The best weights are restored; returns the history."""
        # Multi-threaded scatter-adds (the backward of gathering a batch's rows) sum in a
        # varying order; deterministic kernels make the same seed give the same numbers.
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit(net, train, valid, callback)
        finally:
            torch.use_deterministic_algorithms(previous)

    def _fit(self, net: nn.Module, train, valid, callback) -> History:
        cfg = self.config
        device, dtype = cfg.torch_device(), cfg.torch_dtype()
        net.to(device=device, dtype=dtype)
        users, items, ratings = (torch.as_tensor(a).to(device) for a in train)
        users, items, ratings = users.long(), items.long(), ratings.to(dtype)
        if valid is not None and len(valid[0]) == 0:
            valid = None
        if valid is not None:
            valid = tuple(torch.as_tensor(a).to(device) for a in valid)
            valid = (valid[0].long(), valid[1].long(), valid[2].to(dtype))

        generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        history = History()
        best_state, best = None, math.inf
        n = len(ratings)
        n_batches = max(1, math.ceil(n / cfg.batch_size))
        start = time.perf_counter()
        bar = _progress(cfg, n_batches)
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
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                pred = net(users[idx], items[idx])
                mse = torch.mean((pred - ratings[idx]) ** 2)
                loss = mse + cfg.l2 * net.penalty() if cfg.l2 > 0 else mse
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sum_mse += mse.detach() * len(idx)
                sum_loss += loss.detach() * len(idx)
                if bar is not None:
                    bar.update()
                    if b % 50 == 0 or b == n_batches - 1:
                        bar.set_postfix_str(_status(sum_mse, sum_loss, b, idx, cfg, n, history), refresh=False)
            train_mse = float(sum_mse) / n
            train_loss = float(sum_loss) / n
            if not (math.isfinite(train_mse) and math.isfinite(train_loss)):
                raise TrainingError(
                    f"the training loss became {train_loss} in epoch {epoch}; lower the learning rate "
                    f"(now {cfg.lr:g}) or check the data for extreme values"
                )
            valid_rmse = rmse_of(net, *valid, batch_size=8192) if valid is not None else float("nan")
            row = {
                "epoch": epoch,
                "train_mse": train_mse,
                "train_loss": train_loss,
                "valid_rmse": valid_rmse,
                "seconds": time.perf_counter() - t0,
            }
            history.epochs.append(row)
            if bar is not None:
                bar.set_postfix_str(
                    f"train mse {train_mse:.4f} | mse+reg {train_loss:.4f} | valid rmse {valid_rmse:.4f}", refresh=True
                )
                bar.write(
                    f"epoch {epoch}: train mse {train_mse:.4f}, train mse + reg {train_loss:.4f}, "
                    f"valid rmse {valid_rmse:.4f} ({row['seconds']:.2f} s)",
                    file=sys.stderr,
                )
            if callback is not None:
                callback(row)
            score = valid_rmse if valid is not None else train_loss
            if score < best:
                best, history.best_epoch = score, epoch
                best_state = copy.deepcopy(net.state_dict())
            elif cfg.patience and epoch - history.best_epoch >= cfg.patience:
                history.stopped_early = True
                break
        if bar is not None:
            bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        history.best_valid_rmse = best if valid is not None else float("nan")
        history.seconds = time.perf_counter() - start
        return history


def _status(sum_mse, sum_loss, b, idx, cfg, n, history) -> str:
    seen = min((b + 1) * cfg.batch_size, n)
    last = history.epochs[-1]["valid_rmse"] if history.epochs else float("nan")
    return f"train mse {float(sum_mse) / seen:.4f} | mse+reg {float(sum_loss) / seen:.4f} | valid rmse {last:.4f}"


def _progress(cfg: TrainConfig, total: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="batch", leave=False, dynamic_ncols=True)


@torch.no_grad()
def predict_batches(net: nn.Module, users: torch.Tensor, items: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Predictions of ``net`` in eval mode, in batches (no dropout, no gradient)."""
    was_training = net.training
    net.eval()
    out = torch.cat([net(users[s : s + batch_size], items[s : s + batch_size]) for s in range(0, len(users), batch_size)])
    net.train(was_training)
    return out


def rmse_of(net: nn.Module, users, items, ratings, batch_size: int = 8192) -> float:
    """RMSE of ``net`` on index tensors."""
    pred = predict_batches(net, users, items, batch_size)
    return float(torch.sqrt(torch.mean((pred.double() - ratings.double()) ** 2)))

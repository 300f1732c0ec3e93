"""Users and items known by what they are: attribute towers beside a fitted network.

A model that reads attributes (``uses_attributes``) represents a user or item with training
ratings as it always did; one without (an item added this morning, a user who has just
signed up) is represented from its attributes by a small tower, ``features -> Dense(hidden)
-> LeakyReLU -> Dense(d + 1)``, whose output takes the place of the network's learnt
representation (``d`` units) and bias. The towers are trained after the network, on the
training ratings, as DropoutNet trains a recommender to stand on content alone: each step
drops one side's learnt representation and predicts the rating from that side's attributes
instead (item side, user side, and both), through the network's own head, which stays as
trained. So warm predictions are exactly those of the network without attributes, and a
cold one is what the trained network makes of an attribute-made representation.

:class:`Catalogue` holds the features of every user and item the model can score from
attributes (those of the id map, and items added later, :meth:`~neucf.models.Recommender.add_items`).

Examples:
    >>> tower = AttributeTower(n_features=3, width=4, hidden=8)
    >>> [t.shape for t in tower(torch.zeros(2, 3))]
    [torch.Size([2, 4]), torch.Size([2])]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..attributes import FeatureMap
from .persistence import sparse_from_state, sparse_state

log = logging.getLogger(__name__)

#: the sides a model may know by attributes
SIDES = ("user", "item")


@dataclass(frozen=True)
class TowerSettings:
    """How the attribute towers are made and trained.

    Attributes:
        hidden: units of a tower's hidden layer.
        steps: training steps (batches; passes over the ratings as many as that takes).
        lr: Adam's learning rate.
        l2: penalty on the towers' weights (a sum of squares, per rating of a batch).
        batch_size: ratings per step.
        held_out: the share of users and of items whose ratings judge the towers as if
            they were new, and which they never train on (see :func:`fit_towers`).
        check_every: steps between two such judgements.
        patience: judgements without improvement before training stops.

    Examples:
        >>> TowerSettings().hidden
        64
    """

    hidden: int = 64
    steps: int = 2000
    lr: float = 0.003
    l2: float = 1e-3
    batch_size: int = 8192
    held_out: float = 0.1
    check_every: int = 20
    patience: int = 5


class AttributeTower(nn.Module):
    """Features -> (a representation of ``width`` units, a bias): one hidden LeakyReLU layer;
    the output layer starts at zero (a side known by nothing scores as the mean)."""

    def __init__(self, n_features: int, width: int, hidden: int, alpha: float = 0.4):
        super().__init__()
        self.hidden = nn.Linear(n_features, hidden)
        self.activation = nn.LeakyReLU(alpha)
        self.out = nn.Linear(hidden, width + 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.out(self.activation(self.hidden(features)))
        return out[:, :-1], out[:, -1]

    def penalty(self) -> torch.Tensor:
        return (self.hidden.weight**2).sum() + (self.out.weight**2).sum()


def towers_state(towers: nn.ModuleDict | None) -> dict:
    """Towers as plain values and tensors (for a model file)."""
    return {side: {"width": t.out.out_features - 1, "hidden": t.hidden.out_features, "weights": t.state_dict()}
            for side, t in (towers or {}).items()}  # fmt: skip


def towers_from_state(state: dict, catalogue: Catalogue) -> nn.ModuleDict:
    """The towers :func:`towers_state` wrote."""
    towers = nn.ModuleDict()
    for side, tower in state.items():
        towers[side] = AttributeTower(catalogue.maps[side].width, tower["width"], tower["hidden"])
        towers[side].load_state_dict(tower["weights"])
    return towers.eval()


@dataclass
class Catalogue:
    """The attribute features a fitted model holds: per side, its :class:`~neucf.attributes.FeatureMap`
    (None: no attributes on that side), the features of every id of the model's map (rows of
    ids without attributes are zero) and which ids have an attribute row.

    Examples:
        >>> from neucf.attributes import read_attributes
        >>> table = read_attributes(b"item,genres\\n1,Drama\\n")
        >>> c = Catalogue.of(np.array([1]), np.array([1, 2]), None, table)
        >>> c.has["item"].tolist(), c.features["item"].shape
        ([True, False], (2, 1))
    """

    maps: dict[str, FeatureMap | None]
    features: dict[str, sp.csr_matrix | None]
    has: dict[str, np.ndarray | None]
    _dense: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, user_ids: np.ndarray, item_ids: np.ndarray, users, items) -> Catalogue:
        """From attribute tables (:class:`~neucf.attributes.Attributes` or None) for the id maps."""
        maps, features, has = {}, {}, {}
        for side, ids, table in (("user", user_ids, users), ("item", item_ids, items)):
            fm = None if table is None else table.encoder()
            maps[side] = fm if fm is not None and fm.width else None
            features[side] = None if maps[side] is None else maps[side].transform(table, ids).astype(np.float32)
            has[side] = None if maps[side] is None else table.rows_for(ids) >= 0
        return cls(maps, features, has)

    def knows(self, side: str) -> bool:
        """Whether this side has attributes."""
        return self.maps[side] is not None

    def extend(self, side: str, table, ids) -> None:
        """Add the rows of new ids (appended to the model's id map) from ``table``."""
        if not self.knows(side):
            return
        rows = self.maps[side].transform(table, ids).astype(np.float32)
        self.features[side] = sp.vstack([self.features[side], rows], format="csr")
        self.has[side] = np.concatenate([self.has[side], table.rows_for(ids) >= 0])

    def pad(self, side: str, n: int) -> None:
        """Add ``n`` rows without attributes (ids appended to the map without any, such as
        items folded in from their interactions), so that rows stay the map's positions."""
        if not self.knows(side) or not n:
            return
        empty = sp.csr_matrix((n, self.features[side].shape[1]), dtype=np.float32)
        self.features[side] = sp.vstack([self.features[side], empty], format="csr")
        self.has[side] = np.concatenate([self.has[side], np.zeros(n, bool)])

    def dense(self, side: str, index) -> torch.Tensor:
        """The features of ``index`` (positions in the id map) as a dense float tensor; of a
        side small enough (up to 2**24 values), from a dense copy made on first use, which a
        training step's thousands of rows are gathered from many times faster."""
        matrix = self.features[side]
        if matrix.shape[0] * matrix.shape[1] > 2**24:
            return torch.from_numpy(matrix[np.asarray(index)].toarray())
        cached = self._dense.get(side)
        if cached is None or len(cached) != matrix.shape[0]:  # made again when ids were added
            cached = self._dense[side] = torch.from_numpy(matrix.toarray())
        return cached[torch.as_tensor(index, dtype=torch.int64)]

    def to_dict(self) -> dict:
        """Plain values and tensors (for a model file)."""
        out = {}
        for side in SIDES:
            if self.knows(side):
                out[side] = {
                    "map": self.maps[side].to_dict(),
                    **sparse_state(self.features[side]),
                    "has": torch.from_numpy(self.has[side]),
                }
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Catalogue:
        """The catalogue :meth:`to_dict` wrote."""
        maps, features, has = dict.fromkeys(SIDES), dict.fromkeys(SIDES), dict.fromkeys(SIDES)
        for side, d in data.items():
            maps[side] = FeatureMap.from_dict(d["map"])
            features[side] = sparse_from_state(d)
            has[side] = d["has"].numpy()
        return cls(maps, features, has)


class TowerScoring:
    """What a model that reads attributes through towers (:func:`fit_towers`) does with them, a
    mixin of :class:`~neucf.models.Recommender`s that give ``_warm_sides()`` (every known user's
    and item's representation and bias, and the mean, as tensors), ``_score_sides(p, q,
    base)`` (scores of representations, row by row) and ``_folded_cold``."""

    #: how the towers are made and trained
    tower_settings: ClassVar[TowerSettings] = TowerSettings()

    def _fit_attributes(self, train) -> None:
        """Encode the attributes (the catalogue) and train the towers that score them."""
        self._attribute_catalogue(train)
        self._sides = None
        self.towers_ = fit_towers(self, self.catalogue_, self.train_, self.tower_settings, self.seed)

    def attribute_sides(self) -> tuple[str, ...]:
        """The sides that have a tower."""
        towers = getattr(self, "towers_", None) if getattr(self, "catalogue_", None) is not None else None
        return tuple(side for side in SIDES if towers is not None and side in towers)

    def _attribute_state(self) -> dict:
        return towers_state(self.towers_)

    def _restore_attributes(self, state: dict) -> None:
        self._sides = None
        self.towers_ = towers_from_state(state, self.catalogue_)

    def _side_reps(self, side: str, index: np.ndarray, known: np.ndarray):
        """Representations, biases and weights (tensors) of ``side``'s ids ``index``: learnt
        where ``known`` (weight 1), else those of :meth:`_cold_reps`."""
        p_all, bu_all, q_all, bi_all, _ = self._cached_sides()
        reps, biases = (p_all, bu_all) if side == "user" else (q_all, bi_all)
        # torch tensors as indices: indexing with numpy arrays takes a path many times slower
        take = torch.from_numpy(np.where(known, index, 0).astype(np.int64))
        rep, bias, weight = reps[take], biases[take], torch.ones(len(take))  # copies
        if not known.all():
            cold = torch.from_numpy(~np.asarray(known, bool))
            rows = np.asarray(index, np.int64)[~np.asarray(known, bool)]
            rep[cold], bias[cold], weight[cold] = self._cold_reps(side, rows)
        return rep, bias, weight

    #: the most ids of one side without training data whose cold representations are kept
    COLD_KEPT: ClassVar[int] = 100_000

    def _cold_reps(self, side: str, rows: np.ndarray):
        """Representations, biases and weights of ``side``'s ids ``rows``, which have no
        training data: an item's folded in from its interactions where it has them (they say
        more than genres; the weight shrinks what the network adds to the baseline for an item
        of few interactions, see :meth:`~neucf.models.Recommender.add_items`), else the side's
        tower's output from the attributes (weight 1)."""
        kept = self._cold_side(side)
        if kept is not None:
            take = torch.from_numpy(rows)
            return tuple(x[take] for x in kept)
        if side in self.attribute_sides():
            rep, bias = self.towers_[side](self.catalogue_.dense(side, rows))
        else:
            rep, bias = torch.zeros(len(rows), self._cached_sides()[2].shape[1]), torch.zeros(len(rows))
        return self._with_folds(side, rows, rep, bias, torch.ones(len(rows)))

    def _with_folds(self, side: str, rows: np.ndarray, rep, bias, weight):
        """``rep``, ``bias`` and ``weight`` of ids ``rows`` with the folded-in items' own put in place."""
        folds = self._item_folds() if side == "item" else None
        if folds is None:
            return rep, bias, weight
        at = folds[0][rows]
        hit = torch.from_numpy(np.flatnonzero(at >= 0))
        if len(hit):
            for x, part in zip((rep, bias, weight), zip(*(folds[1][j] for j in at[at >= 0]))):
                x[hit] = torch.stack(part).to(x.dtype)
        return rep, bias, weight

    def _cold_side(self, side: str):
        """:meth:`_cold_reps` of every id of ``side`` (rows of the ids with training data
        unused), computed once and kept until the weights, the catalogue or the folds change:
        a server scores the same new items for every list. None past :attr:`COLD_KEPT` such ids."""
        sides, n = self._cached_sides(), len(self.user_ids if side == "user" else self.item_ids)
        folds = getattr(self, "item_folds_", None) if side == "item" else None
        kept = getattr(self, "_cold_sides", None) or {}
        if side in kept and kept[side][0] is sides and kept[side][1] is folds and len(kept[side][2]) == n:
            return kept[side][2:]
        known = self.known_users if side == "user" else self.known_items
        cold = np.flatnonzero(~known[:n])
        if len(cold) > self.COLD_KEPT:
            return None
        width = (sides[0] if side == "user" else sides[2]).shape[1]
        reps, biases, weights = torch.zeros(n, width), torch.zeros(n), torch.ones(n)
        if side in self.attribute_sides():
            with torch.no_grad():
                reps[cold], biases[cold] = self.towers_[side](self.catalogue_.dense(side, cold))
        reps[cold], biases[cold], weights[cold] = self._with_folds(side, cold, reps[cold], biases[cold], weights[cold])
        self._cold_sides = {**kept, side: (sides, folds, reps, biases, weights)}
        return reps, biases, weights

    def _weighed(self, p, q, base, weight):
        """Scores of representations (:meth:`_score_sides`), what the network adds to ``base``
        shrunk by ``weight`` where it is below 1."""
        scores = self._score_sides(p, q, base)
        shrunk = weight < 1
        if bool(shrunk.any()):
            scores = torch.where(shrunk, base + weight * (scores - base), scores)
        return scores

    def _cold_scores(self, u: np.ndarray, i: np.ndarray, user_known: np.ndarray, item_known: np.ndarray) -> np.ndarray:
        """Scores of pairs with a side known only by attributes or folded-in interactions
        (their representation takes the place of the learnt one), in batches."""
        mean = self._cached_sides()[4]
        out = np.empty(len(u), np.float32)
        with torch.no_grad():
            for s in range(0, len(u), 8192):
                p, bu, _ = self._side_reps("user", u[s : s + 8192], user_known[s : s + 8192])
                q, bi, weight = self._side_reps("item", i[s : s + 8192], item_known[s : s + 8192])
                out[s : s + len(p)] = self._weighed(p, q, mean + bu + bi, weight).float().numpy()
        return out

    def _rep_scores(self, p, bias, items: np.ndarray) -> np.ndarray:
        """Scores of one user given by a representation ``p`` (1, d) and ``bias`` for ``items``
        (known, or known by attributes or interactions), unclipped."""
        with torch.no_grad():
            q, bi, weight = self._side_reps("item", items, self.known_items[items])
            mean = self._cached_sides()[4]
            return self._weighed(p.expand(len(items), -1), q, mean + bias + bi, weight).float().numpy()

    def _user_scores(self, u: int, items: np.ndarray, unseen: bool = False) -> np.ndarray:
        # a known user's items known only by attributes are scored from the user's learnt
        # representation in one pass, not pair by pair (a server's list did both per request)
        warm = self.known_items[items]
        if warm.all() or not self.known_users[u] or not self._cold_known("item", items[~warm]).any():
            return super()._user_scores(u, items, unseen)
        out = np.empty(len(items), np.float32)
        if warm.any():
            out[warm] = self._score_user(u, items[warm], unseen)
        p_all, bu_all, *_ = self._cached_sides()
        cold = self._rep_scores(p_all[u : u + 1], bu_all[u], items[~warm])
        out[~warm] = np.clip(cold, *self.scale) if self.task == "rating" else cold
        return out

    def _new_user_scores(self, features, items: np.ndarray) -> np.ndarray:
        """Scores of a user known only by attributes (a features row) for ``items``, unclipped."""
        with torch.no_grad():
            p, bias = self.towers_["user"](torch.as_tensor(features, dtype=torch.float32))
        return self._rep_scores(p, bias, items)

    def _cached_sides(self):
        if getattr(self, "_sides", None) is None:
            self._sides = self._warm_sides()
        return self._sides


def fit_towers(model, catalogue: Catalogue, train, settings: TowerSettings, seed: int) -> nn.ModuleDict:
    """Towers for the sides ``catalogue`` knows, trained on ``train``'s ratings (indices) through
    ``model``'s network, which stays as it is (see the module docstring). ``model`` gives
    ``_warm_sides()`` (every known user's and item's representation and bias, and the mean)
    and ``_score_sides(p, q, base)``.

    A tenth of the users and of the items (seeded) are held out: the towers never train on
    their ratings, whose RMSE as if they were new (every ``check_every`` steps; the item's,
    the user's and both's together) picks the towers kept and stops the training when it no
    longer falls; an item's year and genres
    together can all but name it, so trained on every item a tower learns the training items
    by heart instead of what their attributes say."""
    users, items, ratings = (torch.as_tensor(np.asarray(a)) for a in train)
    users, items, ratings = users.long(), items.long(), ratings.float()
    sides = model._warm_sides()
    towers = nn.ModuleDict()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for side, width in (("user", sides[0].shape[1]), ("item", sides[2].shape[1])):
            if catalogue.knows(side):
                towers[side] = AttributeTower(catalogue.maps[side].width, width, settings.hidden)
    if not len(towers):
        return towers
    held = {
        side: torch.rand(int(index.max()) + 1, generator=generator)[index] < settings.held_out
        for side, index in (("user", users), ("item", items))
    }
    fit = torch.nonzero(~(held["user"] & held["item"])).squeeze(1)
    judge = torch.nonzero(held["user"] | held["item"]).squeeze(1)
    judge = judge[torch.randperm(len(judge), generator=generator)[:50_000]]
    optimiser = torch.optim.Adam(towers.parameters(), lr=settings.lr)
    # judged together: a pair new on both sides is scored by both towers at once
    best, kept, waited, step = np.inf, None, 0, 0
    while step < settings.steps and waited < settings.patience:
        order = fit[torch.randperm(len(fit), generator=generator)]
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            losses = _cold_losses(model, towers, catalogue, sides, users[batch], items[batch], ratings[batch],
                                  {side: ~h[batch] for side, h in held.items()})  # fmt: skip
            loss = sum(losses.values()) / len(losses)
            optimiser.zero_grad()
            (loss + settings.l2 * sum(t.penalty() for t in towers.values())).backward()
            optimiser.step()
            step += 1
            if step % settings.check_every == 0 or step == settings.steps:
                with torch.no_grad():
                    towers.eval()
                    losses = _cold_losses(model, towers, catalogue, sides, users[judge], items[judge], ratings[judge],
                                          {side: h[judge] for side, h in held.items()})  # fmt: skip
                    towers.train()
                score = float(sum(losses.values())) / max(len(losses), 1)
                if score < best - 1e-5:
                    best, waited, kept = score, 0, {k: v.clone() for k, v in towers.state_dict().items()}
                else:
                    waited += 1
                log.info("attribute towers, step %d: held-out RMSE as new %s", step,
                         ", ".join(f"{kind} {float(mse) ** 0.5:.4f}" for kind, mse in losses.items()))  # fmt: skip
            if step >= settings.steps or waited >= settings.patience:
                break
    if kept is not None:
        towers.load_state_dict(kept)
    towers.eval()
    return towers


def _tower_rows(tower: AttributeTower, catalogue: Catalogue, side: str, index: torch.Tensor):
    """The tower's output for ``side``'s ids ``index``: made for every id of the side and
    gathered when the side has fewer ids than ``index`` has rows (a training step then runs
    the tower on each id once), else for the rows themselves."""
    n = catalogue.features[side].shape[0]
    if n <= len(index):
        rep, bias = tower(catalogue.dense(side, torch.arange(n)))
        return rep.index_select(0, index), bias.index_select(0, index)
    return tower(catalogue.dense(side, index))


def _cold_losses(model, towers, catalogue, sides, u, i, r, usable) -> dict[str, torch.Tensor]:
    """Mean squared errors of the pairs ``u``, ``i`` scored with a side's learnt
    representation replaced by its tower's: the item's (``"item"``, over the pairs where
    ``usable["item"]``), the user's, and both's (``"both"``); a kind without such pairs is
    left out. Masks weigh the errors (no gathering of the usable rows: a tenth of a step)."""
    p_all, bu_all, q_all, bi_all, mean = sides
    cold = {side: _tower_rows(towers[side], catalogue, side, u if side == "user" else i) for side in towers}
    weights = {"item": usable["item"], "user": usable["user"], "both": usable["user"] & usable["item"]}
    losses = {}

    def add(kind: str, predicted: torch.Tensor) -> None:
        weight = weights[kind].to(predicted.dtype)
        if weight.sum() > 0:
            losses[kind] = ((predicted - r) ** 2 * weight).sum() / weight.sum()

    if "item" in cold:  # an old user, an item known by its attributes
        q, bi = cold["item"]
        add("item", model._score_sides(p_all.index_select(0, u), q, mean + bu_all.index_select(0, u) + bi))
    if "user" in cold:
        p, bu = cold["user"]
        add("user", model._score_sides(p, q_all.index_select(0, i), mean + bu + bi_all.index_select(0, i)))
    if len(cold) == 2:
        (p, bu), (q, bi) = cold["user"], cold["item"]
        add("both", model._score_sides(p, q, mean + bu + bi))
    return losses

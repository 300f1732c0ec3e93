"""How the models that rank items score users and items known only by attributes: two
closed-form linear maps, in the units of the interactions they reconstruct (as EASE's are).

- **Items**: ``W`` (items x item features) minimises ``|X - X W A^T|^2 + lam |W|^2`` over the
  training interactions ``X`` (users x items, 1 each) and the items' attribute features
  ``A``: a user's history says which attributes they pick, and an item nobody has had scores
  ``x_u W a_j``. Solved exactly through the eigenvectors of ``X^T X`` and ``A^T A`` (the
  cost of one EASE solve), ``lam`` the product of their mean diagonals.
- **Users**: ``H`` (user features x items) is the ridge regression of the rows of ``X`` on the
  users' attribute features ``C``: a user known only by attributes has the predicted row
  ``c_u H``, which scores the items as a row (and, through ``W``, the new items).

Each map's scores are then put on the model's own scale by a least-squares line fitted on
random (user, item) pairs of known users and items, so that new items and old ones compete
in one list (the line's slope is kept positive: it never reverses a map's order).

Examples:
    >>> x = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 1]], dtype=np.float32))
    >>> maps = LinearMaps.fit(x, np.eye(3), None)
    >>> maps.item.shape, maps.user is None
    ((3, 3), True)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

log = logging.getLogger(__name__)

#: the most items the item map is solved for: its solve holds two items x items matrices of
#: float64 (1.6 GB at this size) and its eigendecomposition's time grows with the cube of the
#: items (seconds at ML-1M's 3,706, minutes here)
MAX_ITEMS = 10_000


@dataclass
class LinearMaps:
    """``item`` (``W``) and ``user`` (``H``) maps (None: that side has no attributes), and
    each kind of cold pair's calibration ``(slope, intercept)``: ``"item"``, ``"user"``, ``"both"``."""

    item: np.ndarray | None
    user: np.ndarray | None
    calibration: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, x: sp.csr_matrix, items: np.ndarray | None, users: np.ndarray | None, max_items: int = MAX_ITEMS
    ) -> LinearMaps:
        """The maps of interactions ``x`` (users x items) and the features of the same items
        (``items``, rows of ``x``'s columns) and users (``users``, rows of ``x``'s rows). The
        item map's exact solve holds two items x items matrices: above ``max_items`` items it
        is not made (said in the log), and new items are then not scored from attributes.

        Examples:
            >>> x = sp.csr_matrix(np.eye(3, dtype=np.float32))
            >>> LinearMaps.fit(x, np.eye(3), None, max_items=2).sides()
            ()
        """
        w = h = None
        if items is not None and x.shape[1] > max_items:
            log.warning(
                "new items are not scored from attributes: the item map's exact solve holds two %d x %d matrices "
                "(it is made up to %d items)", x.shape[1], x.shape[1], max_items,
            )  # fmt: skip
            items = None
        if items is not None:
            gram = (x.T @ x).toarray().astype(np.float64)
            s, u = np.linalg.eigh(gram)
            features = items.astype(np.float64)
            cross = features.T @ features
            t, v = np.linalg.eigh(cross)
            lam = max(float(np.diag(gram).mean() * np.diag(cross).mean()), 1e-6)
            # X^T X W A^T A + lam W = X^T X A, diagonal in both eigenbases
            w = u @ ((u.T @ (gram @ features) @ v) / (np.outer(np.maximum(s, 0), np.maximum(t, 0)) + lam)) @ v.T
        if users is not None:
            c = users.astype(np.float64)
            cc = c.T @ c
            mu = max(0.1 * float(np.diag(cc).mean()), 1e-6)
            h = np.linalg.solve(cc + mu * np.eye(len(cc)), np.asarray((x.T @ c).T))
        return cls(w, h)

    def sides(self) -> tuple[str, ...]:
        return tuple(side for side, m in (("user", self.user), ("item", self.item)) if m is not None)

    def raw(self, kind: str, history: np.ndarray | None, features: np.ndarray | None, items: np.ndarray,
            item_features: np.ndarray | None) -> np.ndarray:  # fmt: skip
        """Uncalibrated scores of pairs of the ``kind`` ``"item"`` (an old user, given by
        ``history``: their interaction rows times ``W``), ``"user"`` (a user given by their
        attribute ``features``, an old item of index ``items``) or ``"both"``, the new items
        given by their ``item_features``."""
        if kind == "item":
            return np.einsum("nf,nf->n", history, item_features)
        if kind == "user":
            return np.einsum("nf,fn->n", features, self.user[:, items])
        return np.einsum("nf,nf->n", features @ (self.user @ self.item), item_features)

    def calibrate(self, kind: str, raw: np.ndarray, model_scores: np.ndarray) -> None:
        """Fit ``kind``'s line from the map's ``raw`` scores to the model's own."""
        slope, intercept = np.polyfit(raw, model_scores, 1) if np.ptp(raw) > 0 else (0.0, float(model_scores.mean()))
        self.calibration[kind] = (max(float(slope), 1e-9), float(intercept))

    def scale(self, kind: str, raw: np.ndarray) -> np.ndarray:
        slope, intercept = self.calibration.get(kind, (1.0, 0.0))
        return (slope * raw + intercept).astype(np.float32)

    def to_dict(self) -> dict:
        """Plain values and tensors (for a model file)."""
        maps = {k: torch.from_numpy(m) for k, m in (("item", self.item), ("user", self.user)) if m is not None}
        return {"maps": maps, "calibration": {k: list(v) for k, v in self.calibration.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> LinearMaps:
        maps = {k: t.numpy() for k, t in data["maps"].items()}
        calibration = {k: (float(a), float(b)) for k, (a, b) in data["calibration"].items()}
        return cls(maps.get("item"), maps.get("user"), calibration)


class MapScoring:
    """What a model that ranks items does with attributes: :class:`LinearMaps` of its training
    interactions, on its own scale; a mixin of the ranking models (``_training_interactions``,
    ``_predict_index``)."""

    uses_attributes: ClassVar[bool] = True

    def _fit_attributes(self, train) -> None:
        """Encode the attributes (the catalogue), fit the maps and their lines."""
        self._attribute_catalogue(train)
        n_users, n_items = self.trained_sizes_
        items, users = self._features("item", np.arange(n_items)), self._features("user", np.arange(n_users))
        self.maps_, self._histories = LinearMaps.fit(self._training_interactions(), items, users), None
        # each map's line onto the model's scores, from random pairs of known users and items
        rng = np.random.default_rng(self.seed)
        users = np.repeat(rng.choice(np.flatnonzero(self.known_users), 500), 8)
        items = rng.choice(np.flatnonzero(self.known_items), len(users))
        own = self._predict_index(users, items)
        for kind in self._map_kinds():
            self.maps_.calibrate(kind, self._raw_map_scores(kind, users, items), own)

    def _features(self, side: str, index: np.ndarray) -> np.ndarray | None:
        if not self.catalogue_.knows(side):
            return None
        return self.catalogue_.features[side][index].toarray()

    def _map_kinds(self) -> list[str]:
        sides = self.maps_.sides()
        return [kind for kind, needs in (("item", {"item"}), ("user", {"user"}), ("both", {"user", "item"}))
                if needs <= set(sides)]  # fmt: skip

    def _raw_map_scores(self, kind: str, u: np.ndarray, i: np.ndarray, history=None) -> np.ndarray:
        if kind == "item" and history is None:  # old users' histories through W, made once
            if getattr(self, "_histories", None) is None:
                self._histories = np.asarray(self._training_interactions() @ self.maps_.item)
            history = self._histories[u]
        features = self._features("user", u) if kind != "item" else None
        item_features = self._features("item", i) if kind != "user" else None
        return self.maps_.raw(kind, history, features, i, item_features)

    def attribute_sides(self) -> tuple[str, ...]:
        """The sides that have a map."""
        maps = getattr(self, "maps_", None)
        return () if maps is None or getattr(self, "catalogue_", None) is None else maps.sides()

    def _cold_scores(self, u, i, user_known, item_known):
        # a known user's items folded in from their interactions are the model's own to score
        folded = self._folded_items(i) & user_known
        out = np.empty(len(u), np.float32)
        if folded.any():
            out[folded] = self._folded_item_scores(u[folded], i[folded])
        for kind, mine in (("item", user_known & ~folded), ("user", item_known), ("both", ~user_known & ~item_known)):
            if mine.any():
                out[mine] = self.maps_.scale(kind, self._raw_map_scores(kind, u[mine], i[mine]))
        return out

    def _folded_cold(self, state, items, row):
        folded = self._folded_items(items)
        out = np.empty(len(items), np.float32)
        if folded.any():
            out[folded] = self._folded_user_item_scores(state, items[folded], row)
        if not folded.all():
            rest = items[~folded]
            history = np.zeros((1, self.trained_sizes_[1]))
            history[0, row[0]] = 1.0
            history = np.repeat(history @ self.maps_.item, len(rest), axis=0)
            raw = self.maps_.raw("item", history, None, rest, self._features("item", rest))
            out[~folded] = self.maps_.scale("item", raw)
        return out

    def _folded_item_scores(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Scores of known users ``u`` for items ``i`` folded in from their interactions
        (:meth:`~neucf.models.Recommender.add_items`), by a model that folds items in."""
        raise NotImplementedError

    def _folded_user_item_scores(self, state, items: np.ndarray, row) -> np.ndarray:
        """Scores of a folded-in user (``state`` of ``_fold_in``, from ``row``) for items
        folded in from their interactions, by a model that folds items in."""
        raise NotImplementedError

    def _new_user_scores(self, features, items):
        warm = self.known_items[items]
        features = np.repeat(np.asarray(features, np.float64), len(items), axis=0)
        out = np.empty(len(items), np.float32)
        for kind, mine in (("user", warm), ("both", ~warm)):
            if mine.any():
                raw = self.maps_.raw(kind, None, features[mine], items[mine], self._features("item", items[mine]))
                out[mine] = self.maps_.scale(kind, raw)
        return out

    def _attribute_state(self) -> dict:
        return self.maps_.to_dict()

    def _restore_attributes(self, state: dict) -> None:
        self.maps_, self._histories = LinearMaps.from_dict(state), None

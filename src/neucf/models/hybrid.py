"""The configuration neucf recommends for lists (``--task ranking``): will they pick it, and
will they like it.

What a user will rate highly depends first on whether they would watch it at all, then on
how they would rate it; ranking by predicted rating alone puts acclaimed films most users
never pick on top of everyone's list. So a list is ranked by

    score(u, i) = max(pick(u, i), 0) x like(u, i)

``pick`` is EASE (Steck 2019; with the dropout term of EDLAE as an option) on every
interaction of train, ratings included whatever their value (up to :data:`DENSE_ITEMS`
items; above, where EASE's items x items inverse grows past what pays, EASE on each item's
nearest neighbours, :class:`~neucf.models.SparseEASE`: chosen by the data's size, never by
the machine, and recorded in the model's ``pick``), mixed with a share (``mix``) of EASE on
the ratings at or above the relevance threshold alone; ``like`` is a rating model's
(NeuMF's) predicted rating turned into a probability-like weight,
``sigmoid((r - c) / s)``, ``c`` halfway between the relevance threshold and the rating value
below it (3.5 for "4 and up" on 1-5), ``s`` a share of the scale. EASE's ``lambda`` and
dropout, the mix and the slope ``s`` are chosen together on the validation part (NDCG@10 of the lists
against the items rated at or above the threshold; a seeded tenth of train when the split
has none, after which both models are fitted on all of train; with the neighbourhood EASE,
its own ``lambda`` and dropout first, then the mix and slope). On interactions without
ratings there is nothing to like or dislike: the list is EASE's alone.

Examples:
    >>> from neucf.datasets import Ratings
    >>> r = Ratings.from_arrays([1, 1, 2, 2, 3, 3], [1, 2, 1, 2, 1, 3], [5.0, 4.0, 5.0, 4.0, 5.0, 1.0])
    >>> model = Hybrid(l2=1.0, dropout=0.0, like="bias").fit(r)
    >>> model.recommend(3, k=1)["item"].tolist()
    [2]
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ..datasets.ratings import lookup_ids
from ..errors import UsageError
from ..training import help_metadata
from .ease import EASE, check_item_count, check_penalties, solve
from .persistence import from_payload, payload
from .ranking import RankingConfig, RankingModel, interactions
from .registry import make_model, model_class, register
from .sparse_ease import VALIDATION_USERS, SparseEASE

log = logging.getLogger(__name__)

#: the slopes tried for ``like``, as shares of a quarter of the rating scale
SLOPES = (0.7, 1.0, 1.4)
#: the shares of ``pick`` tried for EASE on the relevant ratings alone
MIXES = (0.0, 0.3)
#: the most items for which ``pick`` is dense EASE when not named: its validation grid solves
#: an items x items inverse nine times (time items^3: seconds at 5,000 items, ten minutes at
#: 10,000); above, the neighbourhood EASE, as good there and linear in items
DENSE_ITEMS = 5_000
#: what ``pick`` may be
PICKS = ("ease", "sparse-ease")


@dataclass
class HybridConfig(RankingConfig):
    """What the hybrid is made of.

    Attributes:
        l2: EASE's lambda (unset: chosen on validation, see :class:`~neucf.models.EASEConfig`).
        dropout: EASE's dropout emphasis (unset: chosen on validation, 0 or 0.5).
        like: the rating model whose predictions say "will they like it" (rated data only;
            any rating model, e.g. ``neumf``, ``ensemble``, ``mf``, ``bias``).
        slope: ``s`` of ``sigmoid((r - c) / s)`` as a share of a quarter of the scale
            (unset: chosen on validation from :data:`SLOPES`).
        mix: the share of ``pick`` that is EASE on the relevant ratings alone (its lambda
            scaled to their number per item; unset: chosen on validation from :data:`MIXES`).
        pick: the "will they pick it" model, ``ease`` or ``sparse-ease`` (unset: ``ease`` up
            to :data:`DENSE_ITEMS` items in train, else ``sparse-ease``; a fitted model
            holds the one it used).
        neighbours: the neighbourhood EASE's weights per item.

    Examples:
        >>> HybridConfig().like
        'neumf'
    """

    l2: float | None = field(
        default=None, metadata=help_metadata("EASE: L2 penalty lambda (unset: chosen on validation).")
    )
    dropout: float | None = field(
        default=None, metadata=help_metadata("EASE: dropout emphasis p in [0, 1) (EDLAE; unset: chosen on validation).")
    )
    like: str = field(
        default="neumf", metadata=help_metadata("Hybrid: the rating model that says whether a user will like an item.")
    )
    slope: float | None = field(
        default=None,
        metadata=help_metadata("Hybrid: slope of the like weight, in quarters of the scale (unset: chosen)."),
    )
    mix: float | None = field(
        default=None,
        metadata=help_metadata("Hybrid: share of EASE on the relevant ratings alone in 'pick' (unset: chosen)."),
    )
    pick: str | None = field(
        default=None,
        metadata=help_metadata(
            f"Hybrid: 'will they pick it': ease (dense) or sparse-ease (unset: ease up to {DENSE_ITEMS:,} items)."
        ),
    )
    neighbours: int = field(default=50, metadata=help_metadata("Sparse EASE: weights per item (its neighbours)."))

    def __post_init__(self):
        check_penalties(self.l2, self.dropout)
        if "rating" not in model_class(self.like).tasks:
            raise UsageError(f"like must name a rating model, not {self.like!r}")
        if self.slope is not None and not (self.slope > 0 and np.isfinite(self.slope)):
            raise UsageError(f"slope must be a positive number, got {self.slope}")
        if self.mix is not None and not 0 <= self.mix <= 1:
            raise UsageError(f"mix must be in [0, 1], got {self.mix}")
        if self.pick is not None and self.pick not in PICKS:
            raise UsageError(f"pick must be one of {', '.join(PICKS)}, got {self.pick!r}")
        if self.neighbours < 1:
            raise UsageError(f"neighbours must be >= 1, got {self.neighbours}")


@register("hybrid")
class Hybrid(RankingModel):
    """Will they pick it (EASE) x will they like it (a rating model): see the module docstring."""

    config_class = HybridConfig

    def _center(self, train) -> float:
        """``c``: halfway between the relevance threshold and the highest rating value below it."""
        threshold = self.relevance_threshold
        below = np.unique(train.ratings)[np.unique(train.ratings) < threshold]
        return float((threshold + below.max()) / 2) if len(below) else float(threshold)

    def _like_weights(self, predictions: np.ndarray, slope: float) -> np.ndarray:
        low, high = self.scale
        return 1.0 / (1.0 + np.exp(-(predictions - self.center_) / (slope * (high - low) / 4)))

    def _relevant(self, ratings):
        """The ratings at or above the relevance threshold."""
        return ratings.subset(np.flatnonzero(ratings.ratings >= self.relevance_threshold))

    def _pick_kind(self, train) -> str:
        """``pick`` as given, else chosen by ``train``'s item count (:data:`DENSE_ITEMS`)."""
        if self.config.pick is not None:
            return self.config.pick
        return "ease" if len(np.unique(train.items)) <= DENSE_ITEMS else "sparse-ease"

    def _sparse_pick(self, **settings) -> SparseEASE:
        cfg = self.config
        given = {"l2": cfg.l2, "dropout": cfg.dropout, "relevant": cfg.relevant} | settings
        return SparseEASE(neighbours=cfg.neighbours, seed=self.seed, **given)

    def check_size(self, train):
        """Refuse data whose "will they pick it" model does not fit (dense EASE's items x items
        matrices, :func:`check_item_count`; the neighbourhood EASE's own check), and data too
        large for the "will they like it" model."""
        if self._pick_kind(train) == "ease":
            check_item_count(train.n_items, "the hybrid's EASE")
        else:
            self._sparse_pick().check_size(train)
        if not train.implicit:
            make_model(self.config.like).check_size(train)

    def _fit(self, train, valid, options):
        cfg = self.config
        rated = not train.implicit
        self.center_ = self._center(train) if rated else 0.0
        grid = EASE(l2=cfg.l2, dropout=cfg.dropout)._grid(train)
        slopes = list(SLOPES) if cfg.slope is None else [cfg.slope]
        mixes = list(MIXES) if cfg.mix is None else [cfg.mix]
        if not rated:
            slopes, mixes = [None], [0.0]
        # the hybrid scores users and items known only by attributes itself (RankingModel's
        # linear maps), in its own units: its members read none
        train = dataclasses.replace(train, item_attributes=None, user_attributes=None)
        fit_part, check = self._split_for_settings(train, valid)
        given = fit_part is train
        like = None
        if rated:
            like = make_model(cfg.like, seed=self.seed, unknown="fallback")
            like.fit(fit_part, check if given else None, device=options.device, progress=options.progress)
        # lambda for EASE on the relevant ratings: the same share of their own count per item
        per_item = lambda part: len(part) / max(len(np.unique(part.items)), 1)  # noqa: E731
        relevant_scale = per_item(self._relevant(train)) / per_item(train) if rated else 1.0
        kind = self._pick_kind(train)
        log.info("hybrid: 'will they pick it' is %s (%s items; dense EASE is the default up to %s)", kind,
                 f"{len(np.unique(train.items)):,}", f"{DENSE_ITEMS:,}")  # fmt: skip
        self.config = dataclasses.replace(cfg, pick=kind)  # recorded, so that a replay takes the same path
        if kind == "sparse-ease":
            self._fit_sparse(train, fit_part, check, like, mixes, slopes, relevant_scale, options)
        else:
            self._fit_dense(train, fit_part, check, like, grid, mixes, slopes, relevant_scale)
        if like is not None and not given:  # chosen on a held-out share: the final one sees all of train
            like = make_model(cfg.like, seed=self.seed, unknown="fallback")
            like.fit(train, None, device=options.device, progress=options.progress)
        self.like_ = like
        self.history = None if like is None else like.history

    def _fit_dense(self, train, fit_part, check, like, grid, mixes, slopes, relevant_scale):
        """EASE's lambda and dropout, the mix and the slope chosen together on ``check``; the
        EASE models fitted on all of train."""
        rated = like is not None
        if len(grid) * len(slopes) * len(mixes) > 1:
            # the like model's predictions, once for every user the validation ranks
            liked = None if like is None else self._like_scores(like, np.arange(train.n_users))
            x = interactions(fit_part)
            gram = (x.T @ x).toarray().astype(np.float64)
            x_rel = interactions(self._relevant(fit_part)) if rated else None
            gram_rel = None if x_rel is None else (x_rel.T @ x_rel).toarray().astype(np.float64)
            scored = []
            for l2, p in grid:
                weights = solve(gram, l2, p).astype(np.float32)
                weights_rel = None
                if gram_rel is not None and any(mixes):
                    weights_rel = solve(gram_rel, l2 * relevant_scale, p).astype(np.float32)
                for mix in mixes:
                    for slope in slopes:

                        def scores(users, w=weights, w_rel=weights_rel, m=mix, s=slope):
                            pick = np.asarray(x[users] @ w)
                            if m:
                                pick = (1 - m) * pick + m * np.asarray(x_rel[users] @ w_rel)
                            return pick if liked is None else np.maximum(pick, 0) * self._like_weights(liked[users], s)

                        scored.append((self._validation_ndcg(scores, x, check), l2, p, mix, slope))
                        log.info("hybrid: lambda %.4g, dropout %g, mix %g, slope %s: validation NDCG@10 %.4f",
                                 l2, p, mix, slope, scored[-1][0])  # fmt: skip
            _, l2, p, mix, slope = max(scored, key=lambda s: (np.nan_to_num(s[0], nan=-1.0), -s[1]))
        else:
            (l2, p), mix, slope = grid[0], mixes[0], slopes[0]
        self.l2_, self.dropout_, self.mix_, self.slope_ = float(l2), float(p), float(mix), slope
        self.pick_ = EASE(l2=l2, dropout=p, seed=self.seed).fit(train)
        self.pick_relevant_ = None
        if mix:
            self.pick_relevant_ = EASE(l2=l2 * relevant_scale, dropout=p, seed=self.seed).fit(self._relevant(train))

    def _fit_sparse(self, train, fit_part, check, like, mixes, slopes, relevant_scale, options):
        """The neighbourhood EASE chooses its own lambda on ``check`` (its Gram blocks gathered
        once for the whole grid), then the mix and the slope are chosen with it on a sample of
        ``check``'s users (:data:`~neucf.models.sparse_ease.VALIDATION_USERS`), the like model
        predicting only the pairs with a positive pick; refitted on all of train when ``check``
        was held out of it."""
        fitting = {"device": options.device, "progress": options.progress}
        pick = self._sparse_pick().fit(fit_part, check, **fitting)
        l2, p = pick.l2_, pick.dropout_
        pick_rel = None
        if like is not None and any(mixes):
            pick_rel = self._sparse_pick(l2=l2 * relevant_scale, dropout=p).fit(self._relevant(fit_part), **fitting)
        mix, slope = mixes[0], slopes[0]
        if len(mixes) * len(slopes) > 1:
            check = self._validation_sample(check, VALIDATION_USERS)
            x = interactions(fit_part)
            scored = []
            for mix in mixes:
                for slope in slopes:

                    def scores(users, m=mix, s=slope):
                        return self._sparse_combine(users, pick, pick_rel, m, s, self._like_of(like, users))

                    scored.append((self._validation_ndcg(scores, x, check), mix, slope))
                    log.info("hybrid: mix %g, slope %s: validation NDCG@10 %.4f", mix, slope, scored[-1][0])
            _, mix, slope = max(scored, key=lambda s: np.nan_to_num(s[0], nan=-1.0))
        self.l2_, self.dropout_, self.mix_, self.slope_ = float(l2), float(p), float(mix), slope
        if fit_part is not train:
            pick = self._sparse_pick(l2=l2, dropout=p).fit(train, **fitting)
            pick_rel = None if not mix else self._sparse_pick(l2=l2 * relevant_scale, dropout=p).fit(
                self._relevant(train), **fitting)  # fmt: skip
        self.pick_, self.pick_relevant_ = pick, pick_rel if mix else None

    def _sparse_combine(self, users, pick, pick_rel, mix, slope, like_of) -> sp.csr_matrix | None:
        """The hybrid's scores of ``users`` from neighbourhood EASE models as a sparse matrix
        (missing entries 0, as ``max(pick, 0)`` makes them): ``like_of(rows, cols)`` gives
        the like model's predicted ratings of the stored pairs (None without a like model)."""
        scores = pick._sparse_scores(users)
        if scores is None:
            return None
        if mix:
            scores = (1 - mix) * scores + mix * pick_rel._sparse_scores(users)
        scores = sp.csr_matrix(scores, dtype=np.float32)
        if like_of is None:
            return scores
        scores = scores.maximum(0).tocsr()
        scores.eliminate_zeros()
        coo = scores.tocoo()  # the order of the stored entries, row by row
        scores.data = (scores.data * self._like_weights(like_of(coo.row, coo.col), slope)).astype(np.float32)
        return scores

    def _sparse_scores(self, users):
        like = self._like_of(self.like_, users)
        return self._sparse_combine(users, self.pick_, self.pick_relevant_, self.mix_, self.slope_, like)

    @staticmethod
    def _like_of(like, users):
        """A function of ``(rows, items)``: the like model's predicted ratings of the pairs
        ``users[rows]`` x ``items`` (those a sparse list scores); None without a like model."""
        if like is None:
            return None
        return lambda rows, items: like.predict_index(users[rows], items, unknown="fallback")

    @staticmethod
    def _like_scores(like, users) -> np.ndarray:
        """The like model's predicted ratings of ``users`` x every item (the baseline for items
        it does not know)."""
        n_items = len(like.item_ids)
        out = np.empty((len(users), n_items), np.float32)
        known = np.flatnonzero(like.known_items)
        for row, u in enumerate(users):
            out[row] = like.mean_ + like.item_bias_
            if like.known_users[u]:
                out[row, known] = like._score_user(int(u), known)
        return out

    def _combine(self, pick, pick_relevant, predictions):
        if self.mix_:
            pick = (1 - self.mix_) * pick + self.mix_ * pick_relevant
        if self.like_ is None:
            return pick.astype(np.float32)
        return (np.maximum(pick, 0) * self._like_weights(predictions, self.slope_)).astype(np.float32)

    def _picks(self, method: str, *args):
        """``pick`` and its relevant-only part by one of the EASE models' methods."""
        relevant = None if self.pick_relevant_ is None else getattr(self.pick_relevant_, method)(*args)
        return getattr(self.pick_, method)(*args), relevant

    def _score_users(self, users, items):
        like = None if self.like_ is None else self._like_scores(self.like_, users)[:, items]
        return self._combine(*self._picks("_score_users", users, items), like)

    def _score_user(self, u, items, unseen=False):
        return self._score_users(np.array([u]), items)[0]

    def _predict_index(self, users, items):
        like = None if self.like_ is None else self.like_.predict_index(users, items, unknown="fallback")
        return self._combine(*self._picks("_predict_index", users, items), like)

    def _fold_in(self, items, ratings):
        rated = ~np.isnan(ratings)
        like = None
        if self.like_ is not None and rated.any():
            like = self.like_._fold_in(items[rated], ratings[rated])
        relevant = items[rated & (ratings >= self.relevance_threshold)] if self.like_ is not None else items[:0]
        return self.pick_._fold_in(items, ratings), relevant, like

    def _predict_folded(self, state, items):
        pick_state, relevant_items, like_state = state
        pick = self.pick_._predict_folded(pick_state, items)
        pick_relevant = None
        if self.pick_relevant_ is not None:
            pick_relevant = self.pick_relevant_._predict_folded(relevant_items, items)
        if self.like_ is None:
            return self._combine(pick, pick_relevant, None)
        if like_state is None:  # no rating to fold in: the items' baseline
            like = self.like_.mean_ + self.like_.item_bias_[items]
        else:
            like = np.clip(self.like_._predict_folded(like_state, items), *self.like_.scale)
        return self._combine(pick, pick_relevant, like)

    # ---- items folded in after training: each part folds them from the rows it reads ----------
    def folds_items(self) -> bool:
        """Whether every part folds items in (the dense EASE does; the neighbourhood EASE not)."""
        return all(part is None or part.folds_items() for part in (self.pick_, self.pick_relevant_, self.like_))

    def _fold_items(self, interactions, named=None):
        folded = super()._fold_items(interactions, named)  # checks the table and extends the id map
        named = interactions["item"].unique() if named is None else named
        ratings = interactions["rating"] if "rating" in interactions else pd.Series(np.nan, index=interactions.index)
        self.pick_._fold_items(interactions, named)  # every interaction
        if self.pick_relevant_ is not None:
            self.pick_relevant_._fold_items(interactions[ratings >= self.relevance_threshold], named)
        if self.like_ is not None:
            self.like_._fold_items(interactions.assign(rating=ratings)[ratings.notna()], named)
        return folded

    def _fold_in_item(self, users, ratings):
        return torch.tensor(float(len(users)))  # the parts keep what scores it

    def _in_part(self, part, items: np.ndarray) -> np.ndarray:
        """``items`` (this model's indices) as ``part``'s (-1: the part scores none: no row of
        the item was one it reads); the parts' maps grew apart from this one's."""
        index = lookup_ids(part.item_ids, self.item_ids[items], "item", missing_ok=True)
        index[index >= 0] = np.where(part.scorable("item")[index[index >= 0]], index[index >= 0], -1)
        return index

    def _folded_item_scores(self, u, i):
        parts = (self.pick_, self.pick_relevant_, self.like_)
        return self._combine(*[None if part is None else part._predict_mapped(u, self._in_part(part, i), "fallback")[0]
                               for part in parts])  # fmt: skip

    def _folded_user_item_scores(self, state, items, row):
        pick_state, relevant_items, like_state = state
        pick = self._part_folded(self.pick_, pick_state, items, row, 0.0)
        relevant = None
        if self.pick_relevant_ is not None:
            relevant = self._part_folded(self.pick_relevant_, relevant_items, items, row, 0.0)
        like = None
        if self.like_ is not None:
            like = self._part_folded(self.like_, like_state, items, row, self.like_.mean_)
        return self._combine(pick, relevant, like)

    def _part_folded(self, part, state, items, row, missing: float) -> np.ndarray:
        """A folded-in user's scores by ``part`` for folded ``items``: ``missing`` where the
        part has none of an item or the user gave it nothing to read (no rating: the like
        model's mean)."""
        index = self._in_part(part, items)
        out = np.full(len(items), missing, np.float32)
        has = index >= 0
        if has.any() and state is not None:
            scores = part._folded_cold(state, index[has], row)
            out[has] = np.clip(scores, *part.scale) if part.task == "rating" else scores
        return out

    def _state(self):
        return {
            "pick": payload(self.pick_),
            "pick_relevant": None if self.pick_relevant_ is None else payload(self.pick_relevant_),
            "like": None if self.like_ is None else payload(self.like_),
            "chosen": [self.l2_, self.dropout_, self.mix_, self.slope_, self.center_],
        }

    def _restore(self, state, device):
        self.pick_ = from_payload(state["pick"], device)
        relevant = state["pick_relevant"]
        self.pick_relevant_ = None if relevant is None else from_payload(relevant, device)
        self.like_ = None if state["like"] is None else from_payload(state["like"], device)
        self.l2_, self.dropout_, self.mix_, self.slope_, self.center_ = state["chosen"]

"""The ratings container: raw ids mapped to dense indices, plus sparse user x item matrices.

It holds explicit ratings or, with ``implicit``, interactions without ratings (plays, clicks,
purchases), each with a weight (1, or a count).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import DataError


@dataclass(frozen=True, eq=False)
class Ratings:
    """A table of explicit ratings (or of interactions) with dense user and item indices.

    ``users[k]``, ``items[k]``, ``ratings[k]`` describe rating ``k``; ``user_ids[users[k]]``
    gives back the raw user id (likewise for items). Rows keep file order, which the
    ``movielens`` split relies on. A subset made by :meth:`subset` shares the id maps, so
    the train, validation and test parts of a split index the same users and items.

    With ``implicit``, the rows are interactions without ratings: ``ratings`` holds each
    one's weight (1, or a count of plays or clicks) and ``scale`` is None.

    Examples:
        >>> r = Ratings.from_arrays(["a", "b", "a"], [10, 10, 20], [4.0, 3.0, 5.0])
        >>> (r.n_users, r.n_items, len(r), r.scale)
        (2, 2, 3, (3.0, 5.0))
        >>> Ratings.from_arrays(["a", "b"], [10, 10], implicit=True).ratings.tolist()
        [1.0, 1.0]
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    scale: tuple[float, float] | None
    timestamps: np.ndarray | None = None
    item_titles: np.ndarray | None = field(default=None, repr=False)
    implicit: bool = False
    #: what the items and users are (:class:`~neucf.attributes.Attributes`), when known
    item_attributes: object | None = field(default=None, repr=False)
    user_attributes: object | None = field(default=None, repr=False)

    @classmethod
    def from_arrays(
        cls, users, items, ratings=None, timestamps=None, scale=None, item_titles=None, implicit: bool = False
    ) -> Ratings:
        """Build from raw id arrays; indices follow sorted raw ids.

        ``scale`` is ``(min, max)``; when omitted it is inferred from the data.
        ``item_titles`` maps raw item id to title (a dict or a pandas Series).
        ``implicit``: interactions without ratings; ``ratings`` are then their weights
        (default 1) and there is no scale.
        """
        u_idx, u_ids = pd.factorize(np.asarray(users), sort=True)
        i_idx, i_ids = pd.factorize(np.asarray(items), sort=True)
        if ratings is None and not implicit:
            raise DataError("ratings are needed unless the data is implicit (interactions without ratings)")
        values = np.ones(len(u_idx), np.float32) if ratings is None else np.asarray(ratings, dtype=np.float32)
        if not values.flags.writeable:  # pandas' copy-on-write columns are read-only; torch wants to own them
            values = values.copy()
        if len(values) == 0:
            raise DataError(f"no {'interactions' if implicit else 'ratings'}: the data is empty")
        if implicit:
            scale = None
        elif scale is None:
            scale = (float(values.min()), float(values.max()))
        titles = None
        if item_titles is not None:
            titles = pd.Series(item_titles).reindex(np.asarray(i_ids)).to_numpy(dtype=object)
        return cls(
            users=u_idx.astype(np.int32),
            items=i_idx.astype(np.int32),
            ratings=values,
            user_ids=np.asarray(u_ids),
            item_ids=np.asarray(i_ids),
            scale=None if scale is None else (float(scale[0]), float(scale[1])),
            timestamps=None if timestamps is None else np.asarray(timestamps, dtype=np.int64),
            item_titles=titles,
            implicit=implicit,
        )

    def __len__(self) -> int:
        return len(self.ratings)

    @property
    def n_users(self) -> int:
        """Number of users in the id map (a subset may not rate them all)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items in the id map."""
        return len(self.item_ids)

    def subset(self, index: np.ndarray) -> Ratings:
        """The ratings at ``index`` (positions), sharing this object's id maps and scale."""
        index = np.asarray(index)
        return Ratings(
            users=self.users[index],
            items=self.items[index],
            ratings=self.ratings[index],
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            scale=self.scale,
            timestamps=None if self.timestamps is None else self.timestamps[index],
            item_titles=self.item_titles,
            implicit=self.implicit,
            item_attributes=self.item_attributes,
            user_attributes=self.user_attributes,
        )

    def with_attributes(self, items=None, users=None) -> Ratings:
        """These ratings with item and user attribute tables (:class:`~neucf.attributes.Attributes`,
        None: none) that the models which read attributes use; an item whose table gives a
        title and that has none yet takes it.

        Examples:
            >>> from neucf.attributes import read_attributes
            >>> r = Ratings.from_arrays([1], [7], [4.0]).with_attributes(read_attributes(b"item,genres\\n7,Drama\\n"))
            >>> r.item_attributes.kinds
            {'genres': 'category'}
        """
        titles = self.item_titles
        if items is not None and items.titles is not None:
            given = pd.Series(items.titles.to_numpy(), index=[id_text(x) for x in items.titles.index])
            found = given.reindex([id_text(x) for x in self.item_ids]).to_numpy(dtype=object)
            titles = found if titles is None else np.where(pd.isna(titles), found, titles)
        return replace(self, item_attributes=items, user_attributes=users, item_titles=titles)

    def compact(self) -> Ratings:
        """Drop users and items that have no rating, re-indexing densely (order preserved)."""
        u_keep = np.unique(self.users)
        i_keep = np.unique(self.items)
        if len(u_keep) == self.n_users and len(i_keep) == self.n_items:
            return self
        return Ratings(
            users=np.searchsorted(u_keep, self.users).astype(np.int32),
            items=np.searchsorted(i_keep, self.items).astype(np.int32),
            ratings=self.ratings,
            user_ids=self.user_ids[u_keep],
            item_ids=self.item_ids[i_keep],
            scale=self.scale,
            timestamps=self.timestamps,
            item_titles=None if self.item_titles is None else self.item_titles[i_keep],
            implicit=self.implicit,
            item_attributes=self.item_attributes,
            user_attributes=self.user_attributes,
        )

    @cached_property
    def user_item(self) -> sp.csr_matrix:
        """User x item CSR matrix of ratings (float32; missing entries are absent, i.e. 0)."""
        return sp.csr_matrix(
            (self.ratings, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float32
        )

    @cached_property
    def item_user(self) -> sp.csr_matrix:
        """Item x user CSR matrix (the transpose of :attr:`user_item`, stored row-major)."""
        return self.user_item.T.tocsr()

    def user_index(self, raw_ids) -> np.ndarray:
        """Dense indices of raw user ids; raises :class:`DataError` naming an unknown one."""
        return lookup_ids(self.user_ids, raw_ids, "user")

    def item_index(self, raw_ids) -> np.ndarray:
        """Dense indices of raw item ids; raises :class:`DataError` naming an unknown one."""
        return lookup_ids(self.item_ids, raw_ids, "item")

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with raw ids: columns user, item, rating (and timestamp when known);
        for interactions user, item, weight (only when a weight is not 1) and timestamp."""
        frame = pd.DataFrame({"user": self.user_ids[self.users], "item": self.item_ids[self.items]})
        if not self.implicit:
            frame["rating"] = self.ratings
        elif (self.ratings != 1).any():
            frame["weight"] = self.ratings
        if self.timestamps is not None:
            frame["timestamp"] = self.timestamps
        return frame

    def write_csv(self, path) -> None:
        """Write ``user,item,rating[,timestamp]`` (interactions: ``user,item[,weight][,timestamp]``)
        with raw ids, atomically (temp file + rename)."""
        from ..files import atomic_write

        with atomic_write(path, "w") as handle:
            self.to_frame().to_csv(handle, index=False, float_format="%.7g")

    def describe(self) -> dict:
        """Summary figures: counts, rating range, distinct values, density (for interactions:
        counts, weights, density)."""
        n_users = len(np.unique(self.users))
        n_items = len(np.unique(self.items))
        values = np.unique(self.ratings)
        if self.implicit:
            return {
                "interactions": len(self),
                "users": n_users,
                "items": n_items,
                "implicit": True,
                "weights": [float(v) for v in values] if len(values) <= 20 else len(values),
                "density": float(len(self)) / (n_users * n_items),
                "has_timestamps": self.timestamps is not None,
            }
        return {
            "ratings": len(self),
            "users": n_users,
            "items": n_items,
            "rating_min": float(self.ratings.min()),
            "rating_max": float(self.ratings.max()),
            "rating_values": [float(v) for v in values] if len(values) <= 20 else len(values),
            "rating_mean": float(self.ratings.astype(np.float64).mean()),
            "scale": list(self.scale),
            "density": float(len(self)) / (n_users * n_items),
            "has_timestamps": self.timestamps is not None,
        }


def show_id(raw) -> str:
    """A raw id as a user would type it: ``42`` for numbers, ``'abc'`` for text."""
    value = raw.item() if hasattr(raw, "item") else raw
    return str(value) if isinstance(value, (int, float)) else repr(str(value))


def id_text(raw) -> str:
    """A raw id as text, to match ids across tables read with different types (``42`` and
    ``"42"`` are one id; ``"042"`` is another).

    Examples:
        >>> id_text(np.int64(42)), id_text("042")
        ('42', '042')
    """
    value = raw.item() if hasattr(raw, "item") else raw
    return str(value)


def lookup_ids(id_map: np.ndarray, raw_ids, kind: str, missing_ok: bool = False) -> np.ndarray:
    """Dense indices of raw ids in ``id_map``; an unknown id is a :class:`DataError`, or -1
    when ``missing_ok``. Ids are matched as written: typed as text, ``"42"`` finds the
    integer id 42 but ``"042"`` and ``"42.0"`` do not.

    Examples:
        >>> lookup_ids(np.array([7, 42]), ["42"], "user").tolist()
        [1]
        >>> lookup_ids(np.array([7, 42]), ["042"], "user", missing_ok=True).tolist()
        [-1]
    """
    raw = np.atleast_1d(np.asarray(raw_ids))
    index = pd.Index(id_map)
    if raw.dtype.kind != index.dtype.kind and (raw.dtype.kind in "OUS" or index.dtype.kind in "OUS"):
        # compare as written: the canonical text of an integer id is its digits
        index = pd.Index(np.asarray(id_map).astype(str))
        raw = raw.astype(str)
    pos = index.get_indexer(raw)
    missing = np.flatnonzero(pos < 0)
    if len(missing) and not missing_ok:
        raise DataError(f"unknown {kind} id {show_id(raw[missing[0]])}: it is not in the training data")
    return pos

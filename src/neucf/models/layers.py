"""Small parts the rating-vector networks are built from.

The notebook's first layer is ``Dense(k)`` over a user's whole row of the rating matrix (or
an item's whole column). Here that product is computed from the CSR rows of the training
matrix, never from densified rows.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F


def _take(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tensor[index]`` along the first dimension: ``index_select`` is several times faster
    than advanced indexing on CPU, forward and backward.

    On CUDA a tensor that gets a gradient is gathered by ``F.embedding`` instead: its
    backward sorts the indices and sums each row's gradients in a fixed order, where
    ``index_select``'s and advanced indexing's add them atomically in whatever order the
    threads run (PyTorch lists both as nondeterministic), so the same seed would give
    numbers that differ in their last bits from run to run, and more after many steps."""
    if tensor.is_cuda and tensor.requires_grad:
        rows = F.embedding(index.reshape(-1), tensor.reshape(tensor.shape[0], -1))
        return rows.view(*index.shape, *tensor.shape[1:])
    return torch.index_select(tensor, 0, index.reshape(-1)).view(*index.shape, *tensor.shape[1:])


def _index_types(n: int) -> tuple[type, torch.dtype]:
    """numpy's and torch's integer types for positions and counts below ``n``: 32 bits where
    they fit (half the memory of 64 at ML-25M's size), else 64.

    Examples:
        >>> _index_types(1000)
        (<class 'numpy.int32'>, torch.int32)
    """
    return (np.int32, torch.int32) if n < 2**31 else (np.int64, torch.int64)


def _keep_mask(n: int, p: float, device: torch.device) -> torch.Tensor:
    """Which of ``n`` entries dropout keeps, each with probability ``1 - p`` (to 1 / 65,536):
    four 16-bit draws from each random 64-bit integer, about twice as fast on CPU as one
    ``rand`` per entry."""
    draws = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return draws.view(torch.int16)[:n] >= round(p * 65536) - 32768


BLOCK_BYTES = 2 * 2**20
"""How much of the dense operand one block of a sparse product reads (see :class:`_ColumnBlocks`)."""

BATCH_MASK_SHARE = 0.25
"""The largest share of the training ratings a batch may be for its training step to take its
masked targets out of every row at once (see :class:`SparseRowProjection`'s ``mask_cols``)."""


class _ColumnBlocks(nn.Module):
    """The structure of a sparse CSR matrix whose values come with each product, its entries
    grouped by ranges of columns, so that ``X @ D`` is a sum of products each of which reads
    a slice of ``D`` of about ``BLOCK_BYTES`` (rows of ``width`` 32-bit numbers).

    A sparse product reads one row of ``D`` per non-zero, in no useful order; once ``D``
    outgrows the caches, nearly every read misses; in blocks of 2 MiB the reads stay in the
    caches ("Why the defaults" in the documentation). ``order[i]``: where the i-th regrouped entry's value sits in the
    values given (None: in the same order).
    """

    def __init__(self, indptr, indices, n_cols: int, width: int, order=None, index=torch.int32):
        super().__init__()
        n_rows = len(indptr) - 1
        blocks = max(1, min(n_cols, math.ceil(n_cols * width * 4 / BLOCK_BYTES)))
        edges = np.linspace(0, n_cols, blocks + 1).round().astype(np.int64)
        if blocks > 1:
            # built in 32 bits and block by block: at ML-25M's size each 64-bit array of the
            # entries is 320 MB, and a fit's memory peaked in this build
            block = np.empty(len(indices), dtype=np.min_scalar_type(blocks))
            for start in range(0, len(indices), 2**22):
                part = indices[start : start + 2**22]
                block[start : start + len(part)] = np.searchsorted(edges, part, side="right") - 1
            # stable: entries stay row-major within their block
            regroup = np.argsort(block, kind="stable").astype(_index_types(len(indices))[0])
            sizes = np.bincount(block, minlength=blocks)
            del block
            rows = np.repeat(np.arange(n_rows, dtype=np.int32), np.diff(indptr))
            ends = np.cumsum(sizes)
            regrouped = np.empty_like(indices)
            indptr = np.zeros((blocks, n_rows + 1), dtype=np.int64)
            for b, (first, last) in enumerate(zip(ends - sizes, ends)):
                mine = regroup[first:last]
                regrouped[first:last] = indices[mine] - int(edges[b])
                np.cumsum(np.bincount(rows[mine], minlength=n_rows), out=indptr[b, 1:])
            indices = regrouped
            order = regroup if order is None else np.asarray(order)[regroup]
        else:
            indptr, sizes = np.asarray(indptr)[None, :], [len(indices)]
        as_index = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(index)  # noqa: E731
        self.register_buffer("indptr", as_index(indptr), persistent=False)
        self.register_buffer("indices", as_index(indices), persistent=False)
        self.register_buffer("order", None if order is None else as_index(order), persistent=False)
        self.shape = (n_rows, n_cols)
        self.edges = edges.tolist()
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()

    def product(self, values: torch.Tensor, dense: torch.Tensor, ordered: bool = False) -> torch.Tensor:
        """``X @ dense`` where X holds ``values`` (in the order ``order`` refers to; ``ordered``:
        in this structure's own order already), block by block, each block's rows summed by
        ``F.embedding_bag`` (weights: the values).

        Not torch's CSR product, on any device: on CPU ``embedding_bag`` is faster
        ("Why the defaults" in the documentation); on CUDA cuSPARSE's product sums in an order that changes from run
        to run, which ``torch.use_deterministic_algorithms`` does not cover, where
        ``embedding_bag`` sums each row in order, so one seed gives one answer."""
        gather = self.order is not None and not ordered
        out = None
        for b, (start, end) in enumerate(zip(self.edges[:-1], self.edges[1:])):
            first, last = self.offsets[b], self.offsets[b + 1]
            # block by block: one block's copy of the values at a time
            weights = _take(values, self.order[first:last]) if gather else values[first:last]
            part = F.embedding_bag(
                self.indices[first:last], dense[start:end], self.indptr[b, :-1], mode="sum",
                per_sample_weights=weights,
            )  # fmt: skip
            out = part if out is None else out + part
        return out


class _SparseTimesDense(torch.autograd.Function):
    """``X @ W`` for a sparse ``X`` (its values in ``x``'s own order where ``ordered``, else
    row-major; the same values in the transpose's order; the structures of ``X`` and of its
    transpose as :class:`_ColumnBlocks`).

    The backward is one more product, with the transpose's structure, built once (torch's
    own backward for a CSR product transposes ``X`` on every call: ~4x slower on ml-100k).
    """

    @staticmethod
    def forward(ctx, values, values_t, x, x_t, weight, ordered):
        ctx.save_for_backward(values_t)
        ctx.x_t = x_t
        return x.product(values, weight, ordered)

    @staticmethod
    def backward(ctx, grad):
        (values_t,) = ctx.saved_tensors
        return None, None, None, None, ctx.x_t.product(values_t, grad, ordered=True), None


class SparseRowProjection(nn.Module):
    """``x_r @ W + b`` where ``x_r`` is row ``r`` of a fixed sparse matrix (the training ratings).

    Two exact ways to compute it, picked by ``mode``:

    - ``full``: every row's projection at once, ``X @ W`` as ``embedding_bag`` sums over
      cache-sized blocks of columns (cost: the matrix's non-zeros; see
      :class:`_ColumnBlocks`), then the batch's rows are taken. Cheapest when a batch's
      rows hold more non-zeros than the whole matrix, as on MovieLens-sized data.
    - ``bag``: only the batch's rows, gathered from the CSR arrays and summed with
      ``F.embedding_bag(per_sample_weights=ratings)`` (cost: the batch rows' non-zeros).
    - ``auto`` (default): ``full`` when ``batch_size`` rows drawn by rating hold, on average,
      more than a quarter of the matrix's non-zeros (``bag``'s gather and backward cost
      several times more per non-zero than ``full``'s product); else ``bag``.

    ``mask_cols`` (one column per row, or several as a (rows, m) tensor) removes entries
    (r, c) from row r's input, so that the rating being predicted never sits in its own
    input. In ``bag`` mode the entry's weight is set to 0; in ``full`` mode this is the
    rank-one correction ``x_r @ W - x_rc * W[c]``, except in training when ``batch_size``
    (given when built: the batches training will pass) is at most :data:`BATCH_MASK_SHARE`
    of the entries (:attr:`batch_masking`): then a step takes all of its batch's masked
    entries out of the values before the one product every row shares (:meth:`step_state`;
    the batch's pairs distinct, as the trainer draws them), renormalising their rows. No
    per-pair search and correction, at the price of also hiding, for that step, a row's
    other entries in the batch (about 1 / steps per epoch of them, on top of ``dropout``;
    with a batch of all the data, nothing would be left): a faster epoch, the same accuracy
    within noise ("Why the defaults" in the documentation).
    ``dropout`` drops input entries at random while training (denoising, as in AutoRec),
    rescaling the rest by ``1/(1-p)``.

    ``sample`` (> 0) makes training cost linear in the data: while training, each distinct
    row of the batch is projected once, from at most ``sample`` of its entries drawn
    uniformly with replacement and weighted ``n / sample`` (an unbiased estimate of the
    whole row's product, as GraphSAGE samples neighbours); rows with no more entries are
    used whole. A step then costs (distinct rows) x ``sample``, never the matrix's
    non-zeros. Predicting (eval mode) always uses whole rows.

    ``channels`` (> 1): the matrix is that many equal-width blocks side by side, each row
    holding the same columns in every block (as :func:`~neucf.models.neumf.input_matrices`
    makes them, checked): a masked pair is then found in all channels with one search.

    ``ids``: each row also has a vector of its own, added to its product (row ``r``'s input
    is then ``[x_r | one-hot(r)]``, the original NeuMF's one-hot id beside the seed's rating
    vector), starting at 0: :attr:`row_embedding`. A row given from outside the matrix
    (:meth:`project_row`, a folded-in user) has none. Its penalty is the caller's
    (:meth:`id_penalty`).

    ``features`` (rows x f, sparse): each row's attribute features, whose product with a
    learnt :attr:`feature_weight` (starting at 0) is added to the row's product, as the rating
    vector's is (row ``r``'s input is then ``[x_r | a_r]``); a row given from outside the
    matrix has none.

    ``W`` starts uniform with the scale that gives each output unit standard deviation
    ``init_std`` over the matrix's rows, whatever the rating scale and row lengths (Keras'
    Glorot init starts a deep tower near constant on such rows). ``norm`` divides each row by (its number of
    non-zeros) ** norm; a masked row is divided by its count without the masked entry, so
    masking gives exactly the input the row would have had without that rating.

    Examples:
        >>> import scipy.sparse as sp
        >>> m = sp.csr_matrix(np.array([[0, 2.0], [1.0, 0]], dtype=np.float32))
        >>> proj = SparseRowProjection(m, 3)
        >>> proj(torch.tensor([0, 1])).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        matrix: sp.csr_matrix,
        out_features: int,
        dropout: float = 0.0,
        mode: str = "auto",
        batch_size: int = 512,
        norm: float = 0.0,
        sample: int = 0,
        init_std: float = 0.3,
        channels: int = 1,
        ids: bool = False,
        features: sp.csr_matrix | None = None,
    ):
        super().__init__()
        if sample < 0:
            raise ValueError(f"sample must be >= 0, got {sample}")
        self.sample = sample
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        matrix.sort_indices()
        n_rows, n_cols = matrix.shape
        self.shape = (n_rows, n_cols)
        self.channels = channels
        self.dropout = dropout
        if mode == "auto":
            nnz_per_row = np.diff(matrix.indptr).astype(np.float64)
            rows_nnz_by_rating = (nnz_per_row**2).sum() / max(nnz_per_row.sum(), 1.0)
            mode = "full" if 4 * batch_size * rows_nnz_by_rating > matrix.nnz else "bag"
        if mode not in ("full", "bag"):
            raise ValueError(f"projection mode must be auto, full or bag, not {mode!r}")
        self.mode = mode
        # a batch of at most a quarter of the entries: its step takes all its masked entries
        # out of the input at once (see mask_cols); a larger one would empty the rows
        self.batch_masking = mode == "full" and batch_size * channels <= BATCH_MASK_SHARE * matrix.nnz
        as_tensor = lambda a, t=torch.int64: torch.from_numpy(np.ascontiguousarray(a)).to(t)  # noqa: E731
        # column indices in 32 bits where they fit (half the memory at ML-25M's size;
        # embedding_bag and gathers take them, slightly faster); row pointers stay 64-bit for
        # the arithmetic on them
        index = _index_types(max(matrix.nnz, n_rows, n_cols))[1]
        self.register_buffer("indptr", as_tensor(matrix.indptr), persistent=False)
        # the row-major column indices, which only gathering rows needs (full products keep
        # their own, in blocks): 160 MB a side less at ML-25M's size
        gathers = mode == "bag" or sample > 0
        self.register_buffer("indices", as_tensor(matrix.indices, index) if gathers else None, persistent=False)
        counts = np.diff(matrix.indptr)
        scale = np.maximum(counts, 1).astype(np.float64) ** -norm
        self.norm = norm
        self.register_buffer("counts", as_tensor(counts, torch.float32), persistent=False)
        scaled = matrix.data * np.repeat(scale, counts)  # in float64
        self.register_buffer("values", as_tensor(scaled, torch.float32), persistent=False)
        rows = np.repeat(np.arange(n_rows, dtype=_index_types(n_rows)[0]), counts)
        # Uniform, scaled to the data: each output unit starts with standard deviation
        # ``init_std`` over the rows, whatever the rating scale and row lengths. (Keras'
        # Glorot, the seed's, scales by the number of columns, which for thousands of sparse,
        # normalised columns starts every unit near 0 and leaves a deep tower dead.)
        row_sq = np.bincount(rows, scaled**2, n_rows)
        bound = math.sqrt(3.0) * init_std / math.sqrt(max(row_sq.mean(), 1e-12))
        del scaled
        # row-major keys of the first channel's non-zeros, sorted: finds where (row, col) sits
        # by bisection, in one channel for all of them (see ``position``)
        first = self._first_channel(matrix)
        block = n_cols // channels
        keys = rows[first].astype(np.int64) * block + matrix.indices[first]
        del rows, first  # the entries' 32- and 64-bit arrays go before the blocks' are built
        self.register_buffer("keys", as_tensor(keys), persistent=False)
        if mode == "full":
            self.blocks = _ColumnBlocks(matrix.indptr, matrix.indices, n_cols, out_features, index=index)
            # the transpose's structure, and where each of its entries sits in ``values``: the
            # column-major form of the entries' own positions (scipy's counting sort, in O(nnz))
            at = np.arange(matrix.nnz, dtype=_index_types(matrix.nnz)[0])
            where = sp.csr_matrix((at, matrix.indices, matrix.indptr), shape=matrix.shape).tocsc()
            self.t_blocks = _ColumnBlocks(where.indptr, where.indices, n_rows, out_features, where.data, index)
            # the values in the transpose's order too: a step permutes its keep mask (1 byte an
            # entry) to get them, not its values (4), whose random reads missed the caches:
            # 11.5 of an ML-1M step's 63 ms
            self.register_buffer("values_t", _take(self.values, self.t_blocks.order), persistent=False)
            # and in the blocked product's order, where it regroups them (several blocks): each
            # block's gather of the values read the whole array again (ML-1M's item side: 3
            # blocks; ML-25M-sized: 14 and more)
            ordered = None if self.blocks.order is None else _take(self.values, self.blocks.order)
            self.register_buffer("values_f", ordered, persistent=False)
        self.weight = nn.Parameter(torch.empty(n_cols, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        # not named "...weight": the networks' global L2 skips it; it has its own penalty
        self.row_embedding = nn.Parameter(torch.zeros(n_rows, out_features)) if ids else None
        nn.init.uniform_(self.weight, -bound, bound)
        self.feature_weight = None
        if features is not None and features.shape[1]:
            features = sp.csr_matrix(features, dtype=np.float32)
            self.register_buffer("feature_offsets", as_tensor(features.indptr[:-1]), persistent=False)
            self.register_buffer("feature_indices", as_tensor(features.indices), persistent=False)
            self.register_buffer("feature_values", as_tensor(features.data, torch.float32), persistent=False)
            self.feature_weight = nn.Parameter(torch.zeros(features.shape[1], out_features))

    def _first_channel(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Which non-zeros are in the first channel; checks that every row has the same
        columns in each of the ``channels`` equal-width blocks (as
        :func:`~neucf.models.neumf.input_matrices` makes them): a row's entries are then its
        first channel's, then its second's..., so the k-th channel's entries, in order, are
        the first channel's shifted by k blocks."""
        n_cols, c = self.shape[1], self.channels
        if c == 1:
            return np.ones(matrix.nnz, dtype=bool)
        counts = np.diff(matrix.indptr)
        block = n_cols // c
        same = n_cols % c == 0 and not (counts % c).any()
        if same:
            kinds = np.tile(np.arange(c, dtype=np.min_scalar_type(c)), len(counts))
            channel = np.repeat(kinds, np.repeat(counts // c, c))
            first = channel == 0
            base = matrix.indices[first]
            same = bool((matrix.indices // block == channel).all()) and all(
                np.array_equal(matrix.indices[channel == k] - k * block, base) for k in range(1, c)
            )
        if not same:
            raise ValueError(f"the matrix's rows do not hold the same columns in each of its {c} channels")
        return first

    def position(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Position of entry (row, col) among the non-zeros, or -1 where it is zero.

        ``cols`` may be (n, m): m columns per row, found with one search when they are one
        column in several channels (the masks of :class:`~neucf.models.RatingVectorNet`)."""
        several = cols.dim() == 2
        cols = cols if several else cols[:, None]
        if len(self.keys) == 0:
            return torch.full_like(cols, -1) if several else torch.full_like(rows, -1)
        block = self.shape[1] // self.channels
        channel, base = cols // block, cols % block
        if not bool((base == base[:, :1]).all()):  # different columns: one search each
            found = [self.position(rows, col) for col in cols.unbind(1)]
            return torch.stack(found, 1) if several else found[0]
        key = rows * block + base[:, 0]
        k = torch.searchsorted(self.keys, key).clamp_(max=len(self.keys) - 1)
        start = _take(self.indptr, rows)
        # the row's first-channel entries are ``start // channels`` onwards among the keys,
        # its channel-c entries ``start + c * per`` onwards among the non-zeros
        per = (_take(self.indptr, rows + 1) - start) // self.channels
        pos = start[:, None] + channel * per[:, None] + (k - start // self.channels)[:, None]
        pos = torch.where((_take(self.keys, k) == key)[:, None], pos, torch.full_like(pos, -1))
        return pos if several else pos[:, 0]

    def _finish(self, out: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The rows' products plus the bias and, with ``ids``, each row's own vector, with
        ``features``, their product (``rows``: which rows ``out`` holds; None: all of them,
        in order)."""
        out = out + self.bias
        if self.row_embedding is not None:
            out = out + (self.row_embedding if rows is None else _take(self.row_embedding, rows))
        if self.feature_weight is None:
            return out
        # every row at once: a row holds a few features, so this costs less than a gather of a
        # step's rows would
        weights = self.feature_values.to(self.feature_weight.dtype)
        every = F.embedding_bag(self.feature_indices, self.feature_weight, self.feature_offsets, mode="sum",
                                per_sample_weights=weights)  # fmt: skip
        return out + (every if rows is None else _take(every, rows))

    def every_row(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Every row's ``x_r @ W + b`` (and id vector) from a step's :meth:`step_state`; while
        :attr:`shares_rows_in_step`, what :meth:`forward` gives each pair of the step."""
        return self._finish(state[1])

    @property
    def shares_rows_in_step(self) -> bool:
        """Whether this training step computes every row's whole product once (``full``
        mode, no sampling), so that each row has one input for all of its pairs where the
        step masks nothing or takes its masked entries out at once (:attr:`batch_masking`;
        the caller knows which): what follows may then run once per row."""
        return self.training and self.mode == "full" and not self.sample

    def id_penalty(self, rows: torch.Tensor) -> torch.Tensor:
        """The mean over ``rows`` of their own vectors' squared norms (0 without ``ids``), as
        each distinct row's squared norm times its count in ``rows``: a gather of the
        batch's rows and its backward cost more than the whole table's squares on
        MovieLens-sized batches (tens of thousands of rows, a few thousand distinct)."""
        if self.row_embedding is None:
            return torch.zeros((), dtype=self.weight.dtype, device=self.weight.device)
        counts = torch.bincount(rows, minlength=self.shape[0]).to(self.row_embedding.dtype)
        return (counts @ self.row_embedding.pow(2).sum(1)) / max(len(rows), 1)

    def _input_values(self) -> torch.Tensor:
        values = self.values.to(self.weight.dtype)
        if self.training and self.dropout > 0:
            values = values * _keep_mask(len(values), self.dropout, values.device) / (1.0 - self.dropout)
        return values

    def _step_values(self, gone: torch.Tensor | None = None, row_major: bool = True) -> tuple:
        """A ``full`` step's input values with this step's dropout and without the entries at
        ``gone`` (row-major positions): row-major (None unless ``row_major`` where the products
        do not read them), and the products' inputs (:meth:`_all_rows`'s): in the blocked
        product's order (or row-major) and in the transpose's. One keep mask, drawn row-major
        and permuted (1 byte an entry), gives all of them."""
        dtype = self.weight.dtype
        dropout = self.training and self.dropout > 0
        if not dropout and gone is None:
            values = self.values.to(dtype)
            forward = values if self.values_f is None else self.values_f.to(dtype)
            return values, (forward, self.values_t.to(dtype))
        n, device = len(self.values), self.values.device
        keep = _keep_mask(n, self.dropout, device) if dropout else torch.ones(n, dtype=torch.bool, device=device)
        if gone is not None:
            keep.index_fill_(0, gone, False)
        values_t = self.values_t.to(dtype) * _take(keep, self.t_blocks.order)
        forward = None if self.values_f is None else self.values_f.to(dtype) * _take(keep, self.blocks.order)
        values = self.values.to(dtype) * keep if row_major or forward is None else None
        if dropout:  # in place: the products above are fresh
            for made in (values_t, forward, values):
                if made is not None:
                    made.div_(1.0 - self.dropout)
        return values, (values if forward is None else forward, values_t)

    def _all_rows(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``X @ W`` for every row, given the products' inputs of :meth:`_step_values`.
        Predicting (eval mode, no gradient) reuses it across batches until the weights
        change, so scoring a large set costs one product."""
        frozen = not self.training and not torch.is_grad_enabled()
        key = (self.weight._version, self.weight.data_ptr(), self.weight.dtype)
        if frozen and getattr(self, "_cached_key", None) == key:
            return self._cached
        ordered = self.values_f is not None
        out = _SparseTimesDense.apply(*inputs, self.blocks, self.t_blocks, self.weight, ordered)
        self._cached, self._cached_key = (out, key) if frozen else (None, None)
        return out

    def _renormalize(self, out: torch.Tensor, counts: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Rows of ``counts`` entries that lost ``masked`` of them are re-scaled to their
        count without them."""
        if self.norm == 0:
            return out
        n, m = counts.to(out.dtype), masked.to(out.dtype)
        factor = torch.where((m > 0) & (n > m), (n / (n - m).clamp(min=1)) ** self.norm, torch.ones_like(n))
        return out * factor[:, None]

    def project_row(self, cols: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``x @ W + b`` for one new row given as (column indices, values), normalised like
        the matrix's rows (divided by its number of entries ** norm); shape (1, out)."""
        scale = max(len(cols), 1) ** -self.norm
        weights = (values.to(self.weight.dtype) * scale)[None, :]
        return weights @ self.weight[cols] + self.bias

    def _without_targets(self, out, values, rows, targets, masked, cols) -> torch.Tensor:
        """Whole-row products less each masked target's term (a rank-one correction per
        column, summed by one ``embedding_bag``), renormalised. ``targets``: the entries'
        positions (rows, m), -1 where absent; ``cols``: their columns."""
        if targets is None or not bool(masked.any()):
            return out  # e.g. predicting pairs outside the matrix (a top-k list): nothing to take out
        own = torch.where(targets >= 0, _take(values, targets.clamp(min=0)), torch.zeros((), dtype=values.dtype))
        out = out - F.embedding_bag(cols, self.weight, per_sample_weights=own.to(out.dtype), mode="sum")
        return self._renormalize(out, _take(self.counts, rows), masked)

    def _sampled_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Unbiased estimates of ``x_r @ W`` from at most ``sample`` entries per distinct row."""
        unique, inverse = torch.unique(rows, return_inverse=True)
        start = self.indptr[unique]
        n = self.indptr[unique + 1] - start
        take = n.clamp(max=self.sample)
        offsets = torch.cumsum(take, 0) - take
        total = int(take.sum())
        owner = torch.repeat_interleave(torch.arange(len(unique), device=rows.device), take, output_size=total)
        whole = n[owner] <= self.sample
        within = torch.arange(total, device=rows.device) - offsets[owner]
        drawn = (torch.rand(total, device=rows.device) * n[owner]).long()
        pos = start[owner] + torch.where(whole, within, drawn)
        dtype = self.weight.dtype
        scale = torch.where(whole, 1.0, n[owner].to(dtype) / self.sample).to(dtype)
        weights = _take(self.values, pos).to(dtype) * scale
        if self.dropout > 0:
            weights = weights * _keep_mask(total, self.dropout, rows.device) / (1.0 - self.dropout)
        out = F.embedding_bag(
            _take(self.indices, pos).long(), self.weight, offsets, mode="sum", per_sample_weights=weights
        )
        return _take(out, inverse)

    def step_state(
        self,
        rows: torch.Tensor | None = None,
        mask_cols: torch.Tensor | None = None,
        located: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor] | None:
        """What a training step computes once in ``full`` mode: the input values (with this
        step's dropout; None where the step took its targets out, as then nothing reads
        them) and every row's product, for :meth:`forward`'s ``state`` (so that a large
        batch can be taken in chunks); None in other modes. ``rows`` and ``mask_cols``
        (as :meth:`forward`'s, the pairs distinct): the step's masked entries, taken out of
        both for the whole step where :attr:`batch_masking` says so (see ``mask_cols``).
        ``located``: :meth:`position` of each row's first mask column, found before (a
        trainer finds them once for all its ratings), where ``mask_cols`` holds one column in
        every channel in order, as :class:`~neucf.models.RatingVectorNet` masks."""
        if self.mode != "full" or (self.sample and self.training):
            return None
        if mask_cols is None or not self._step_takes_targets_out:
            values, inputs = self._step_values()
            return values, self._all_rows(inputs)
        targets, masked = self._targets(rows, mask_cols, located)
        values, inputs = self._step_values(targets[targets >= 0], row_major=False)
        removed = torch.bincount(rows, weights=masked, minlength=self.shape[0])
        return values, self._renormalize(self._all_rows(inputs), self.counts, removed)

    @property
    def _step_takes_targets_out(self) -> bool:
        """Whether a step's :meth:`step_state` takes its masked entries out (see ``mask_cols``),
        so that :meth:`forward` must not correct for them again."""
        return self.training and self.batch_masking

    def _targets(
        self, rows: torch.Tensor, mask_cols: torch.Tensor | None, located: torch.Tensor | None = None
    ) -> tuple:
        """Positions of the masked entries ((rows, m), -1 where absent) and how many each
        row has, or (None, None) without ``mask_cols``. ``located``: see :meth:`step_state`;
        the other channels' entries of a row are its first channel's, ``c`` times its
        entries per channel on."""
        if mask_cols is None:
            return None, None
        if located is None:
            targets = self.position(rows, mask_cols if mask_cols.dim() == 2 else mask_cols[:, None])
        else:
            located = located.long()
            per = (_take(self.indptr, rows + 1) - _take(self.indptr, rows)) // self.channels
            channel = torch.arange(mask_cols.shape[1] if mask_cols.dim() == 2 else 1, device=rows.device)
            targets = torch.where((located >= 0)[:, None], located[:, None] + channel * per[:, None], -1)
        return targets, (targets >= 0).sum(1)

    def forward(
        self,
        rows: torch.Tensor,
        mask_cols: torch.Tensor | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        mask_cols = mask_cols if mask_cols is None or mask_cols.dim() == 2 else mask_cols[:, None]
        if self.sample and self.training:
            # the estimate holds each entry in expectation: take the target's out exactly
            targets, masked = self._targets(rows, mask_cols)
            out = self._without_targets(self._sampled_rows(rows), self.values, rows, targets, masked, mask_cols)
            return self._finish(out, rows)
        if self.mode == "full":
            values, every_row = self.step_state(rows, mask_cols) if state is None else state
            out = _take(every_row, rows)
            if not self._step_takes_targets_out:  # else the step's values lack them already
                out = self._without_targets(out, values, rows, *self._targets(rows, mask_cols), mask_cols)
            return self._finish(out, rows)
        targets, masked = self._targets(rows, mask_cols)
        values = self._input_values()
        start = _take(self.indptr, rows)
        lengths = _take(self.indptr, rows + 1) - start
        offsets = torch.cumsum(lengths, 0) - lengths
        total = int(lengths.sum())
        # CSR position of every gathered entry, bag after bag
        pos = torch.repeat_interleave(start - offsets, lengths, output_size=total) + torch.arange(
            total, device=rows.device
        )
        weights = _take(values, pos)
        for target in () if targets is None else targets.unbind(1):
            weights = weights * (pos != torch.repeat_interleave(target, lengths, output_size=total))
        out = F.embedding_bag(
            _take(self.indices, pos).long(), self.weight, offsets, mode="sum", per_sample_weights=weights
        )
        if targets is not None:
            out = self._renormalize(out, _take(self.counts, rows), masked)
        return self._finish(out, rows)


class DenseBlock(nn.Sequential):
    """``n_layers`` x [Linear(units) + LeakyReLU(alpha)] (+ dropout), the seed's DenseBlock.

    Examples:
        >>> DenseBlock(4, 8, n_layers=2)(torch.zeros(3, 4)).shape
        torch.Size([3, 8])
    """

    def __init__(self, in_features: int, units: int, n_layers: int, alpha: float = 0.4, dropout: float = 0.0):
        layers: list[nn.Module] = []
        for i in range(n_layers):
            linear = nn.Linear(in_features if i == 0 else units, units)
            # Glorot-uniform weights and zero biases, as Keras' Dense in the seed: torch's
            # default biases (up to 1/sqrt(fan_in)) swamp the small first-layer signal of
            # normalised sparse rows, and a deep tower then outputs nearly a constant
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.LeakyReLU(alpha)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class BiasTerms(nn.Module):
    """``mean + b_u + b_i``: the bias baseline inside a network, learnt with it.

    Starts from given biases (those :func:`~neucf.models.fit_biases` finds) and is
    regularised as that fit is: :meth:`penalty` of a batch is the mean over its ratings of
    ``reg_user / n_u * b_u**2 + reg_item / n_i * b_i**2``, which summed over all training
    ratings is ``reg_user * sum b_u**2 + reg_item * sum b_i**2``, the least-squares fit's own
    penalty (each per-rating weight capped at 50, which only binds where the fit holds the
    biases at ~0). Left alone by the rest of the network, it converges to that fit.

    Examples:
        >>> terms = BiasTerms(3.5, np.zeros(2), np.array([0.5, -0.5]), np.ones(2), np.ones(2), 1.0, 1.0)
        >>> terms(torch.tensor([0, 1]), torch.tensor([0, 1])).tolist()
        [4.0, 3.0]
    """

    def __init__(self, mean, user_bias, item_bias, user_counts, item_counts, reg_user, reg_item):
        super().__init__()
        self.reg_user, self.reg_item = float(reg_user), float(reg_item)
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.user_bias = nn.Parameter(torch.as_tensor(np.asarray(user_bias), dtype=torch.float32))
        self.item_bias = nn.Parameter(torch.as_tensor(np.asarray(item_bias), dtype=torch.float32))
        # capped at 50 per rating: a weight that high holds the bias at ~0 anyway (data whose
        # biases do not vary get shrinkage of 1e5 and more), and beyond ~100 a plain SGD step
        # (mf's optimiser) overshoots and diverges; every benchmark dataset stays under 6
        per_rating = lambda reg, n: torch.as_tensor(np.minimum(reg / np.maximum(n, 1), 50.0), dtype=torch.float32)  # noqa: E731
        self.register_buffer("user_weight", per_rating(reg_user, user_counts), persistent=False)
        self.register_buffer("item_weight", per_rating(reg_item, item_counts), persistent=False)

    @classmethod
    def from_fit(cls, fit, train) -> BiasTerms:
        """Terms starting from ``fit`` (a :class:`~neucf.models.BiasFit` of ``train``)."""
        counts = (np.bincount(train.users, minlength=train.n_users), np.bincount(train.items, minlength=train.n_items))
        return cls(fit.mean, fit.user_bias, fit.item_bias, *counts, fit.reg_user, fit.reg_item)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        bu, bi = self.biases(users, items)
        return self.mean + bu + bi

    def biases(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's ``b_u`` and ``b_i``."""
        return _take(self.user_bias, users), _take(self.item_bias, items)

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The batch's share of the biases' penalty (see the class docstring)."""
        bu, bi = self.biases(users, items)
        return (self.user_weight[users] * bu**2 + self.item_weight[items] * bi**2).mean()


class ScaledSigmoid(nn.Module):
    """``low + (high - low) * sigmoid(z)``: outputs stay inside the rating scale.

    The seed hard-codes ``1 + 4 * sigmoid(z)``; here the scale comes from the data.

    Examples:
        >>> ScaledSigmoid(1, 5)(torch.zeros(1)).item()
        3.0
    """

    def __init__(self, low: float, high: float):
        super().__init__()
        self.low, self.span = float(low), float(high) - float(low)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.low + self.span * torch.sigmoid(z)

"""One file per model: how every model is written and read back.

A model file is a ``torch.save`` of plain values and tensors (read with
``torch.load(weights_only=True)``, so it can hold no code): the format and its version, the
neucf version that wrote it, the model's name, task, parameters and seed, the id maps, the
scale, the training data needed for inference, the fallback baseline, the history and the
model's own state (:meth:`~neucf.models.Recommender._state`).

Examples:
    >>> from neucf.datasets import Ratings
    >>> from neucf.models import Biases
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> _ = save(Biases().fit(Ratings.from_arrays([1, 2], [1, 1], [4.0, 2.0])), path)
    >>> load(path).name
    'bias'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import DataError
from ..files import atomic_write
from ..training import History

FORMAT = "neucf-model"
#: version 2: typed configs per model family, run-time options no longer saved;
#: version 3 (neucf 0.2.0): networks and mf hold their bias terms, networks read residual rows;
#: version 4 (neucf 0.3.0): networks hold a vector per user and item id (``ids``);
#: version 5 (neucf 0.4.0): the model's task (rating or ranking) and whether its data were
#: interactions without ratings; files of neucf 0.8.0 may also hold ``attributes`` (the
#: attribute features and towers), which a file without it does not need
FORMAT_VERSION = 5


def sparse_state(matrix) -> dict:
    """A sparse matrix as tensors and its shape (for a model file; :func:`sparse_from_state`).

    Examples:
        >>> import scipy.sparse as sp
        >>> m = sp.csr_matrix(np.eye(2, dtype=np.float32))
        >>> (sparse_from_state(sparse_state(m)) != m).nnz
        0
    """
    m = matrix.tocoo()
    return {
        "rows": torch.from_numpy(m.row.astype(np.int64)),
        "cols": torch.from_numpy(m.col.astype(np.int64)),
        "values": torch.from_numpy(m.data.astype(np.float32)),
        "shape": list(m.shape),
    }


def sparse_from_state(data: dict):
    """The CSR matrix :func:`sparse_state` wrote."""
    import scipy.sparse as sp

    coords = (data["rows"].numpy(), data["cols"].numpy())
    return sp.csr_matrix((data["values"].numpy(), coords), shape=tuple(data["shape"]))


def payload(model) -> dict:
    """Everything :func:`save` writes of ``model``, as plain values and tensors."""
    model._check_fitted()
    titles = model.item_titles
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "neucf_version": __version__,
        "model": model.name,
        "task": model.task,
        "implicit": bool(model.implicit),
        "unknown": model.unknown,
        "seed": model.seed,
        "params": model.get_params(),
        "user_ids": _ids_out(model.user_ids),
        "item_ids": _ids_out(model.item_ids),
        "item_titles": None if titles is None else [None if t is None or t != t else str(t) for t in titles],
        "scale": None if model.scale is None else list(model.scale),
        "train": [torch.from_numpy(np.asarray(a)) for a in model.train_],
        "baseline": [model.mean_, torch.from_numpy(model.user_bias_), torch.from_numpy(model.item_bias_)],
        "history": None if model.history is None else model.history.to_dict(),
        "state": model._state(),
        "attributes": _attributes_out(model),
        # items folded in after training (add_items with interactions): their states, and the
        # sizes the network was trained at (the id map grew past them)
        "item_folds": getattr(model, "item_folds_", None) or None,
        "trained_sizes": list(getattr(model, "trained_sizes_", None) or ()) or None,
    }


def _attributes_out(model) -> dict | None:
    """The catalogue of attribute features and what scores from it (None: the model reads no
    attributes)."""
    if getattr(model, "catalogue_", None) is None:
        return None
    return {"trained_sizes": list(model.trained_sizes_), "catalogue": model.catalogue_.to_dict(),
            "scorers": model._attribute_state()}  # fmt: skip


def _attributes_in(model, data: dict | None) -> None:
    from .attribute_towers import Catalogue

    model.catalogue_ = None
    if data is not None:
        model.catalogue_ = Catalogue.from_dict(data["catalogue"])
        model._restore_attributes(data["scorers"])


def from_payload(data: dict, device: str = "cpu"):
    """The model :func:`payload` describes (checked by :func:`load`)."""
    from .registry import model_class

    cls = model_class(data["model"], data["task"])
    model = cls(unknown=data["unknown"], seed=data["seed"], task=data["task"], **data["params"])
    model.user_ids, model.item_ids = _ids_in(data["user_ids"]), _ids_in(data["item_ids"])
    titles = data["item_titles"]
    model.item_titles = None if titles is None else np.array(titles, dtype=object)
    model.scale = None if data["scale"] is None else tuple(data["scale"])
    model.implicit = bool(data["implicit"])
    model._remember_training(*(t.numpy() for t in data["train"]))
    mean, bu, bi = data["baseline"]
    model.mean_, model.user_bias_, model.item_bias_ = float(mean), bu.numpy(), bi.numpy()
    model.history = None if data["history"] is None else History.from_dict(data["history"])
    attributes = data.get("attributes")
    sizes = data.get("trained_sizes") or (attributes or {}).get("trained_sizes")
    if sizes is not None:  # the network is rebuilt at the size it was trained at
        model.trained_sizes_ = tuple(sizes)
    model.item_folds_ = dict(data.get("item_folds") or {})
    model._restore(data["state"], device)
    _attributes_in(model, attributes)
    return model


def save(model, path: str | Path) -> Path:
    """Write ``model`` to one file (atomically: a temporary file renamed when complete)."""
    data = payload(model)
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        writer = _Writes(handle)
        try:
            torch.save(data, writer)
        except RuntimeError:
            # torch reports a failed write ("No space left on device") as a position mismatch
            if writer.error is not None:
                raise writer.error from None
            raise
    return path


class _Writes:
    """A binary file that keeps the error of a failed write, which ``torch.save`` hides."""

    def __init__(self, handle):
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def load(path: str | Path, cls=None, device: str = "cpu"):
    """Read a file written by :func:`save`; ``cls``: the class the model must be (None: any).

    ``device`` is where the model will predict (a run-time choice, not saved). A file of
    another format version is refused with one line naming the neucf version that wrote it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # torch raises many kinds for a file that is not its format
        raise DataError(f"{path}: not a neucf model file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path}: not a neucf model file")
    version = data.get("version")
    if version != FORMAT_VERSION:
        wrote = data.get("neucf_version", "0.1.0" if version == 1 else "an unknown version")
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise DataError(
            f"{path}: written by neucf {wrote} (model format {version}); this neucf {__version__} reads format "
            f"{FORMAT_VERSION}: " + ("upgrade neucf" if newer else "retrain the run with this version")
        )
    from .registry import model_class

    if cls is not None and not issubclass(model_class(data["model"], data["task"]), cls):
        raise DataError(f"{path}: holds a {data['model']!r} model, not a {cls.name or cls.__name__}")
    return from_payload(data, device)


def _ids_out(ids: np.ndarray):
    """Ids for the model file, exactly: int64 as a tensor, uint64 (ids >= 2**63) and text as strings."""
    if ids.dtype.kind == "i":
        return torch.from_numpy(ids.astype(np.int64))
    kind = "uint64" if ids.dtype.kind == "u" else "text"
    return {"kind": kind, "values": [str(x) for x in ids]}


def _ids_in(ids) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        return ids.numpy()
    if ids["kind"] == "uint64":
        return np.array([int(x) for x in ids["values"]], dtype=np.uint64)
    return np.array(ids["values"], dtype=object)

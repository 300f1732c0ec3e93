"""What learns: the seed's NeuMF, GMF and MLP over rating vectors, and baselines.

Example:
    >>> from neucf.models import NeuMF, MODELS
    >>> sorted(MODELS)
    ['bias', 'gmf', 'mean', 'mf', 'mlp', 'neumf']
"""

from .base import REGISTRY as MODELS
from .base import Recommender, fit_biases
from .baselines import Biases, GlobalMean, MatrixFactorization
from .trained import TorchRecommender
from .networks import BiasedMFNet, NetworkConfig, RatingVectorNet, gmf, mlp, neumf
from .neural import GMF, MLP, NeuMF

__all__ = [
    "MODELS", "GMF", "MLP", "BiasedMFNet", "Biases", "GlobalMean", "MatrixFactorization", "NetworkConfig",
    "NeuMF", "RatingVectorNet", "Recommender", "TorchRecommender", "fit_biases", "gmf", "mlp", "neumf",
]

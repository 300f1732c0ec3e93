"""What learns: the seed's NeuMF, GMF and MLP over rating vectors, and baselines.

One family per module: ``neumf`` (NeuMF, GMF, MLP), ``mf`` (biased MF), ``baselines``
(mean, biases), ``ensemble`` (a weighted average of fitted models); ``base`` is the estimator API, ``torch_estimator`` the base of models
trained by gradient, ``registry`` maps ``--model`` names to classes.

Example:
    >>> from neucf.models import model_names
    >>> sorted(model_names())
    ['bias', 'ensemble', 'gmf', 'mean', 'mf', 'mlp', 'neumf', 'pop']
"""

from .base import BiasFit, NoParameters, Recommender, bias_regularisation, fit_biases
from .baselines import BiasConfig, Biases, GlobalMean, Popularity
from .ensemble import Ensemble, EnsembleConfig
from .mf import BiasedMFNet, MatrixFactorization, MFConfig
from .neumf import GMF, MLP, MLPConfig, NetworkConfig, NeuMF, RatingVectorModel, RatingVectorNet
from .registry import make_model, model_class, model_names, register
from .torch_estimator import TorchRecommender

__all__ = [
    "GMF",
    "MLP",
    "BiasConfig",
    "BiasFit",
    "BiasedMFNet",
    "Biases",
    "Ensemble",
    "EnsembleConfig",
    "GlobalMean",
    "MFConfig",
    "MLPConfig",
    "MatrixFactorization",
    "NetworkConfig",
    "NeuMF",
    "NoParameters",
    "Popularity",
    "RatingVectorModel",
    "RatingVectorNet",
    "Recommender",
    "TorchRecommender",
    "bias_regularisation",
    "fit_biases",
    "make_model",
    "model_class",
    "model_names",
    "register",
]

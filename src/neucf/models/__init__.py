"""What learns: the seed's NeuMF, GMF and MLP over rating vectors, baselines, and models that
rank items for top-N lists.

One family per module: ``neumf`` (NeuMF, GMF, MLP as siblings over shared parts) and
``neumf_ranking`` (NeuMF made to rank: a ranking objective over interaction rows), ``mf``
(biased MF), ``baselines`` (mean, biases, popularity), ``ease`` (EASE and its dropout-
regularised form), ``sparse_ease`` (EASE on each item's nearest neighbours, for any catalogue size), ``factorization`` (implicit ALS and BPR), ``hybrid`` (the recommended
ranking configuration: will they pick it, will they like it), ``autorec`` (item-based
AutoRec), ``ensemble`` (a weighted average of fitted models); ``base`` is the estimator
every model is, ``biases`` the bias baseline, ``ranking`` what ranking models share,
``torch_estimator`` the base of models trained by gradient, ``persistence`` the model file,
``registry`` maps ``--model`` names (per task) to classes.

Examples:
    >>> from neucf.models import model_names
    >>> sorted(model_names("rating"))
    ['autorec', 'bias', 'ensemble', 'gmf', 'mean', 'mf', 'mlp', 'neumf', 'pop']
    >>> sorted(model_names("ranking"))
    ['als', 'bpr', 'ease', 'hybrid', 'neumf', 'pop', 'sparse-ease']
"""

from .autorec import AutoRec, AutoRecConfig, AutoRecNet
from .base import BiasFit, NoParameters, Recommender, bias_regularisation, fit_biases
from .baselines import BiasConfig, Biases, GlobalMean, Popularity
from .ease import EASE, EASEConfig
from .ensemble import Ensemble, EnsembleConfig
from .factorization import ALS, BPR, ALSConfig, BPRConfig
from .hybrid import Hybrid, HybridConfig
from .mf import BiasedMFNet, MatrixFactorization, MFConfig
from .neumf import GMF, MLP, MLPConfig, NetworkConfig, NeuMF, RatingVectorModel, RatingVectorNet
from .neumf_ranking import NeuMFRanking, RankingNet, RankingNetworkConfig
from .ranking import RankingConfig, RankingModel
from .registry import make_model, model_class, model_classes, model_names, register
from .sparse_ease import SparseEASE, SparseEASEConfig
from .torch_estimator import TorchRecommender

__all__ = [
    "ALS",
    "BPR",
    "EASE",
    "GMF",
    "MLP",
    "ALSConfig",
    "AutoRec",
    "AutoRecConfig",
    "AutoRecNet",
    "BPRConfig",
    "BiasConfig",
    "BiasFit",
    "BiasedMFNet",
    "Biases",
    "EASEConfig",
    "Ensemble",
    "EnsembleConfig",
    "GlobalMean",
    "Hybrid",
    "HybridConfig",
    "MFConfig",
    "MLPConfig",
    "MatrixFactorization",
    "NetworkConfig",
    "NeuMF",
    "NeuMFRanking",
    "NoParameters",
    "Popularity",
    "RankingConfig",
    "RankingModel",
    "RankingNet",
    "RankingNetworkConfig",
    "RatingVectorModel",
    "RatingVectorNet",
    "Recommender",
    "SparseEASE",
    "SparseEASEConfig",
    "TorchRecommender",
    "bias_regularisation",
    "fit_biases",
    "make_model",
    "model_class",
    "model_classes",
    "model_names",
    "register",
]

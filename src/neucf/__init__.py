"""neucf: neural collaborative filtering (NeuMF, GMF, MLP) for explicit ratings.

Example:
    >>> import neucf
    >>> neucf.__version__
    '0.3.0'
"""

__version__ = "0.3.0"

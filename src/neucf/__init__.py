"""neucf: neural collaborative filtering (NeuMF, GMF, MLP) for ratings and top-N lists.

Examples:
    >>> import neucf
    >>> neucf.__version__
    '0.16.0'
"""

__version__ = "0.16.0"

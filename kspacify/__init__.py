"""kspacify: complex k-space training data from magnitude-only MRI archives."""

__version__ = "0.1.0"

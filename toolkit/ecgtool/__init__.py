"""ecgtool: train, compress, compile and benchmark 1-D SE-ResNet ECG rhythm classifiers."""

__version__ = "0.1.0"

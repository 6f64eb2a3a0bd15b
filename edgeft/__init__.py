"""edgeft: fine-tune, compress, export and benchmark text classifiers for edge devices."""

__version__ = "0.1.0"

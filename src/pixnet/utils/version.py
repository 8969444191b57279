"""pixnet's version, as recorded in model files and output tables."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]

try:
    VERSION = version("pixnet")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0+unknown"

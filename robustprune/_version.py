"""The installed package's version (a bottom-floor module: anything may import it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("robustprune")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+local"

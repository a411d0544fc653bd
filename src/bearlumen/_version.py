"""The package version, read from the installed metadata."""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("bearlumen")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

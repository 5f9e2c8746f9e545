"""The version of ccfcache (its own module, so that low layers can name it without importing
the package, whose attributes import the whole library lazily)."""

__version__ = "0.1.0"

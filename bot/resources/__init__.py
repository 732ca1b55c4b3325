"""Bundled data files (contract specifications); read with importlib.resources."""

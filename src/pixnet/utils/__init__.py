"""Helpers every layer shares: atomic folder replacement and the download cache."""

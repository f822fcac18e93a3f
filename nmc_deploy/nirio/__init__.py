"""The only door for ``nir``: our graph IR to and from NIR files, the portable format, NIRData."""

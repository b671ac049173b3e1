"""Kiln: language runtimes fired into WebAssembly."""

__version__ = "0.1.0"

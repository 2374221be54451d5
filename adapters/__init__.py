"""Adapters: one module per outside dialect, each translating to and from the internal model."""

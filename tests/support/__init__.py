"""Helpers the tests share: real servers over loopback, real gateway processes."""

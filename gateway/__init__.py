"""licgate: the integration gateway between SHEP front ends and a medical-licensing provider's IS."""

__version__ = "0.1.0"

"""Runnable stand-ins for every outside party (SHEP, portals, Center, provider IS, NCA)."""

"""EDS: verify and sign XML signatures, the NCA RK certificate profile, trust, revocation."""

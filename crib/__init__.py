"""crib: a Kubernetes container runtime that speaks only the CRI."""

__version__ = "0.1.0"

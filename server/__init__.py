"""Trinity: remote medical 3D-printing consultations."""

__version__ = "0.1.0"

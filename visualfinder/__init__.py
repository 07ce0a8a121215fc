"""visualfinder: visual product search over a local image catalog."""

__version__ = "0.1.0"

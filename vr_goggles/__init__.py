"""VR-Goggles: real-to-sim image translation for policies trained in simulation."""

__version__ = '0.1.0'

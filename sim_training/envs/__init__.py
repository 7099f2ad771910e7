"""Gymnasium environments of the simulator (import :mod:`sim_training` to register them)."""

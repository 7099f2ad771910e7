"""Benchmarks that print figures (engines, the nodes over DDS, replay); never timed tests."""

"""One module per ``vr-goggles`` verb (see :mod:`vr_goggles.cli`)."""

"""The fleet simulator: realistic vehicle events, bad input, and a ground-truth manifest.

``python -m jobs simulate --help`` for the command; :func:`simulate` for code.
"""

from jobs.devkit.simulator.generate import Message, SimulationParams, simulate

__all__ = ["Message", "SimulationParams", "simulate"]

"""The bundled Mira-compatible simulator: a second product inside the first."""

from worker.sim.faults import Faults
from worker.sim.server import Simulator, make_key

__all__ = ["Faults", "Simulator", "make_key"]

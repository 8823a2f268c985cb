"""The bundled Mira-compatible simulator: a second product inside the first."""

from worker.sim.faults import Faults
from worker.sim.limits import make_key
from worker.sim.server import Simulator

__all__ = ["Faults", "Simulator", "make_key"]

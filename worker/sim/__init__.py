"""The bundled Mira-compatible simulator, a second product inside the first: the
server (server.py), its faults and limits, its answers, and `mira-batch simulate`."""

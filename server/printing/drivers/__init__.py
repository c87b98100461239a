"""Printer drivers: one interface (base.py) over OctoPrint, Moonraker and the simulator."""

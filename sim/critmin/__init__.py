"""critmin: a discrete-event simulator of critical-mineral supply chains under geopolitical pressure."""

__version__ = "0.1.0"

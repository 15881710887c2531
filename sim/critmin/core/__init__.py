"""The model core: pure simulation code.

Imports only the standard library, numpy, scipy and simpy (a test enforces
this). Hydra, files, pandas and matplotlib live at the edges.
"""

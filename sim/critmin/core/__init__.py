"""The model core: pure simulation code.

Imports only the standard library, numpy, scipy and simpy (a test enforces
this). Hydra, files, pandas and matplotlib live at the edges.
"""

# The version of the model's numbers: raised whenever the same config and seed give other
# results, so that a sweep never mixes jobs of two versions (sweep.job_status). Recorded in
# every manifest as `results_version`; a manifest without it is version 1.
#   1: up to 2026-12-05
#   2: monthly flows split by day between the months a tick spans (Calendar.month_split);
#      shipments waiting for a licence recorded when it is granted, not when queued
RESULTS_VERSION = 2

"""KPI formulas: the time to recover from a shortfall, series by series and all at once."""

import numpy as np

from critmin.core.kpis import RECOVERY_THRESHOLD, recovery_days, time_to_recover_days

MONTH_DAYS = np.array([0, 31, 59, 90, 120, 151])  # first day of each month since the start


def test_time_to_recover_counts_days_from_the_first_month_in_shortfall_to_the_first_back():
    share = np.array([0.0, 0.2, 0.5, 0.005, 0.3, 0.0])
    assert time_to_recover_days(share, MONTH_DAYS) == 90 - 31
    assert time_to_recover_days(np.zeros(6), MONTH_DAYS) == 0.0  # never in shortfall
    assert np.isnan(time_to_recover_days(np.array([0, 0, 0, 0.1, 0.1, 0.1]), MONTH_DAYS))


def test_recovery_days_of_all_series_at_once_equal_the_one_series_function():
    rng = np.random.default_rng(7)
    R, N, K = 5, 4, 3
    # shares near the threshold, with NaN months (no demand), series never in shortfall,
    # and series that never recover
    share = rng.choice([0.0, 0.5 * RECOVERY_THRESHOLD, RECOVERY_THRESHOLD, 0.02, 0.3, np.nan],
                       size=(R, len(MONTH_DAYS), N, K))
    share[0, :, 0, 0] = 0.0
    share[1, :, 1, 1] = 0.4
    share[2, 2:, 2, 2] = 0.4
    expected = np.array([[[time_to_recover_days(np.nan_to_num(share[r, :, n, k], nan=0.0),
                                                MONTH_DAYS) for k in range(K)]
                          for n in range(N)] for r in range(R)])
    got = recovery_days(share, MONTH_DAYS)
    np.testing.assert_array_equal(got, expected)
    assert got[0, 0, 0] == 0.0 and np.isnan(got[1, 1, 1]) and np.isnan(got[2, 2, 2])
    assert np.isfinite(got).any() and (got > 0).any()  # the random series include recoveries

"""Simulated time: days since a calendar start date, weekly market ticks, monthly output.

Instants are `*_date` (datetime.date) or `day` (float days since start);
durations are `*_days`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calendar:
    start_date: dt.date
    tick_days: int
    n_ticks: int

    @staticmethod
    def from_horizon(start_date: dt.date, horizon_years: float, tick_days: int) -> Calendar:
        n_ticks = max(1, int(round(horizon_years * 365.25 / tick_days)))
        return Calendar(start_date, tick_days, n_ticks)

    @property
    def ticks_per_year(self) -> float:
        return 365.25 / self.tick_days

    @property
    def horizon_days(self) -> int:
        return self.n_ticks * self.tick_days

    def date_of_day(self, day: float) -> dt.date:
        return self.start_date + dt.timedelta(days=int(day))

    def day_of_date(self, date: dt.date) -> int:
        return (date - self.start_date).days

    def month_index(self) -> tuple[np.ndarray, list[dt.date]]:
        """For each tick, the index of the calendar month its first day falls in; and the months."""
        months: list[dt.date] = []
        index = np.empty(self.n_ticks, dtype=np.int64)
        for t in range(self.n_ticks):
            d = self.date_of_day(t * self.tick_days)
            m = dt.date(d.year, d.month, 1)
            if not months or months[-1] != m:
                months.append(m)
            index[t] = len(months) - 1
        return index, months

"""Simulated time: days since a calendar start date, weekly market ticks, monthly output.

Instants are `*_date` (datetime.date) or `day` (float days since start);
durations are `*_days`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

# Results are by calendar month: a tick may span two months, never three (February has 28 days)
MAX_TICK_DAYS = 28


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

    def month_split(self) -> MonthSplit:
        """How the ticks' days fall in calendar months (ticks of at most MAX_TICK_DAYS days).

        A tick's flows are recorded by day, as if they were even within the tick: its days in
        the month it starts in go to that month, the rest to the next month. The months are
        those the ticks start in; the days of the last tick after the last month are not
        recorded (fewer than tick_days: the ticks overrun the horizon's calendar end), so a
        20-year horizon from 1 January records 240 whole months.
        """
        if not 1 <= self.tick_days <= MAX_TICK_DAYS:
            raise ValueError(f"tick_days={self.tick_days} must be 1 to {MAX_TICK_DAYS}")
        # in numpy's calendar types (a loop over dates took 5 ms, per batch of a run)
        start_day = np.datetime64(self.start_date, "D")
        tick_start = np.arange(self.n_ticks, dtype=np.int64) * self.tick_days  # day of each tick
        tick_month = (start_day + tick_start).astype("datetime64[M]")
        first, index = np.unique(tick_month, return_inverse=True)  # ticks start in every month
        months = [m.item() for m in first.astype("datetime64[D]")]
        next_month_day = ((first + 1).astype("datetime64[D]") - start_day).astype(np.int64)
        in_month = np.minimum(self.tick_days, next_month_day[index] - tick_start)
        share = in_month / self.tick_days
        days = np.bincount(index, weights=in_month, minlength=len(months))
        rest = index + 1 < len(months)
        days += np.bincount(index[rest] + 1, weights=self.tick_days - in_month[rest],
                            minlength=len(months))
        return MonthSplit(index, share, days, months)


@dataclass(frozen=True)
class MonthSplit:
    """Ticks by calendar month (Calendar.month_split)."""

    month_of_tick: np.ndarray  # (T,) index of the month the tick's first day is in
    share_in_month: np.ndarray  # (T,) share of the tick's days in that month; the rest is in the next
    days_in_month: np.ndarray  # (months,) days of each month recorded (the first may be partial)
    months: list[dt.date]  # each month's first day

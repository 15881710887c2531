"""The policy levers at work inside a simulation: who may ship what, at what duty, who holds
reserves, who guarantees prices and who builds capacity.

Each class is one kind of lever acting on a running `Simulation` (`sim`): its dated
changes are SimPy processes (a control starts, is suspended, comes back; a tariff
changes; a plant is commissioned) and its per-tick rules are methods the market tick
calls at fixed points (docs/levers.md, docs/model.md "Levers in the tick"). State is
held as numpy arrays with a leading replication axis, like the rest of the engine.

Timing rule: a lever dated day D takes effect from the first market tick on or after D
(its event is scheduled a hair before that tick).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .levers import NEVER, ExportControl, Levers
from .streams import stream

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from .engine import Simulation

EARLY = 1e-6  # days: lever events run just before a market tick due at the same time
MONTH_DAYS = 365.25 / 12


def wait_until(sim: Simulation, day: float):
    """A SimPy timeout to `day` (a hair early), or None if that moment has passed."""
    delay = day - EARLY - sim.env.now
    return sim.env.timeout(delay) if delay > 0 else None


def lognormal_factor(z: np.ndarray | float, cv: np.ndarray | float) -> np.ndarray:
    """exp(sigma z - sigma^2/2): a mean-one lognormal factor with coefficient of variation cv."""
    sig = np.sqrt(np.log1p(np.square(cv)))
    return np.exp(sig * z - 0.5 * sig * sig)


# ------------------------------------------------------------------------- export controls
class ExportControls:
    """Bans, quotas and licensing of exports; suspensions, re-imposition, front-loading, leakage."""

    def __init__(self, sim: Simulation, controls: tuple[ExportControl, ...]) -> None:
        self.sim, self.controls = sim, controls
        R, N, K = sim.R, sim.N, sim.K
        C = len(controls)
        self.on = np.zeros((R, C), dtype=bool)
        self.announced = np.zeros(C, dtype=bool)
        # settings that may differ between replications (engine.PER_REPLICATION_LEVERS):
        # with own levers each is [R, C], else [C], and the arrays built from them get a
        # replication axis; each replication's numbers are those it gets alone
        self.own = sim.own_levers
        each = [lv.export_controls for lv in sim.levers_each]

        def setting(name: str) -> np.ndarray:
            if not self.own:
                return np.array([getattr(c, name) for c in controls])
            return np.array([[getattr(c, name) for c in cs] for cs in each])

        self.approval_base = setting("base_approval")
        self.delay_mean = setting("delay_mean_days")
        self.reimpose = setting("reimpose_per_month")
        dt_days = sim.cal.tick_days
        self.leak_extra_ticks = np.zeros((N, N, K), dtype=np.int64)
        self.leak_share = np.zeros((N, N, K))
        self.leak_cost = np.zeros((N, N, K))
        for c in controls:
            if c.form != "licensing":
                ticks = int(round(c.leakage_extra_days / dt_days))
                self.leak_extra_ticks = np.where(c.cover, np.maximum(self.leak_extra_ticks, ticks),
                                                 self.leak_extra_ticks)
                self.leak_share = np.where(c.cover, np.maximum(self.leak_share, c.leakage_share),
                                           self.leak_share)
                self.leak_cost = np.where(c.cover, np.maximum(self.leak_cost, c.leakage_cost_usd_per_kg),
                                          self.leak_cost)
        self.extra_lead_max = int(self.leak_extra_ticks.max(initial=0))
        # licensing: a queue of shipments waiting for their licence, slot = decision tick
        lic = [c for c in controls if c.form == "licensing"]
        self.has_licensing = bool(lic)
        def queue_length(cs: tuple[ExportControl, ...]) -> int:
            longest = max((c.delay_mean_days * float(lognormal_factor(4.0, c.delay_cv))
                           for c in cs if c.form == "licensing"), default=0.0)
            return int(np.ceil(longest / dt_days)) + 2

        # the longest delay a replication draws is its LL - 1 ticks (clipped there)
        self.LL_each = np.array([queue_length(cs) for cs in each])
        self.LL = int(self.LL_each.max(initial=queue_length(controls)))
        # The queue [slot, R, dest, column] holds only the destinations a licensing control
        # covers (`lic_dests`) and the (origin, product) columns it covers (`lic_cols`, flat
        # origin * K + product, at least two: with one, numpy would sum over destinations in
        # its inner loop, pairwise, in another order): elsewhere it would stay zero. Summing
        # it over slots and destinations (held_at_origin) then adds the same non-zero terms
        # in the same order as over the full [slot, R, dest, origin, K], at a fraction of the
        # cost (tests/test_policy_speed.py).
        lic_cover = np.zeros((N, N, K), dtype=bool)
        for c in lic:
            lic_cover |= c.cover
        self.lic_dests = np.flatnonzero(lic_cover.any(axis=(1, 2)))
        nD = len(self.lic_dests)
        self.dest_pos = np.zeros(N, dtype=np.int64)  # a licensed destination's place in the queue
        self.dest_pos[self.lic_dests] = np.arange(nD)
        cols = np.flatnonzero(lic_cover.any(axis=0))
        if cols.size == 1:
            cols = np.append(cols, (cols[0] + 1) % (N * K))  # a column that holds zeros
        self.lic_cols = cols
        self.col_pos = np.zeros(N * K, dtype=np.int64)  # a licensed column's place in the queue
        self.col_pos[cols] = np.arange(len(cols))
        # [quantity, provenance-traced part] in one array, so a tick moves both in one call
        self.queues = np.zeros((2, self.LL if lic else 1, R, nD, len(cols)))
        self.queue, self.queue_prov = self.queues  # views
        self.queue_slot_size = R * nD * len(cols)
        # where the queue's cells go in [2 (quantity, provenance), R, dest, origin * K]
        self.queue_cells = np.ix_(np.arange(2), np.arange(R), self.lic_dests, cols)
        # the slots that may hold something: the queue is empty most of the time (licensing
        # is in force for part of a run), and held_at_origin sums only these slots
        self.slot_used = np.zeros(len(self.queue), dtype=bool)
        self.delay_rng = [stream(sim.seed, int(rep), "licence/delay") for rep in sim.reps]
        self.approve_rng = [stream(sim.seed, int(rep), "licence/approval") for rep in sim.reps]
        self.quota_used = np.zeros((R, C))
        self.quota_year = -1
        self.blocked = np.zeros((R, N, N, K))  # 1 where an active ban or quota covers a route
        self.licensing = np.zeros((R, N, N, K))  # 1 where an active licensing control covers
        per_rep = (R,) if self.own else ()
        self.lic_mean = np.zeros((*per_rep, N, N, K))
        self.lic_cv = np.zeros((N, N, K))
        self.lic_approval = np.ones((*per_rep, N, N, K))
        self.cover_extra_days = np.zeros((N, K))
        self._refresh()

    # ---- dated changes ----------------------------------------------------------------
    def processes(self):
        for i, c in enumerate(self.controls):
            yield self.run_control(i)
            if c.approval_changes:
                yield self.run_approval_changes(i)

    def run_control(self, i: int):
        """The life of one control: announced, in force, suspended (maybe revoked), ended."""
        sim, c = self.sim, self.controls[i]
        if c.announce_day < c.start_day and c.front_loading_cover_days > 0:
            if (ev := wait_until(sim, c.announce_day)) is not None:
                yield ev
            self.announced[i] = True
            self._refresh()
        if (ev := wait_until(sim, c.start_day)) is not None:
            yield ev
        self.announced[i] = False
        self.on[:, i] = True
        self._refresh()
        if c.suspend_day < c.end_day:
            if (ev := wait_until(sim, c.suspend_day)) is not None:
                yield ev
            self.on[:, i] = False
            self._refresh()
            until = min(c.resume_day, c.end_day)
            rngs = [stream(sim.seed, int(rep), f"control/{c.name}/reimpose") for rep in sim.reps]
            chance = self.reimpose[..., i] * np.ones(sim.R)  # per replication
            while chance.max() > 0 and sim.env.now + MONTH_DAYS < until:
                yield sim.env.timeout(MONTH_DAYS)
                back = np.array([rng.random() < p for rng, p in zip(rngs, chance, strict=True)])
                if np.any(back & ~self.on[:, i]):
                    self.on[back, i] = True
                    self._refresh()
            if until < c.end_day:
                if (ev := wait_until(sim, until)) is not None:
                    yield ev
                self.on[:, i] = True
                self._refresh()
        if c.end_day < NEVER:
            if (ev := wait_until(sim, c.end_day)) is not None:
                yield ev
            rngs = [stream(sim.seed, int(rep), f"control/{c.name}/lift") for rep in sim.reps]
            lifted = np.array([rng.random() < c.lift_probability for rng in rngs])
            # it ends where lifted; elsewhere it is in force, also after a suspension that ran
            # to end_date (a truce that is not extended: the control returns)
            self.on[:, i] = ~lifted
            self._refresh()

    def run_approval_changes(self, i: int):
        sim, c = self.sim, self.controls[i]
        for day, rate in c.approval_changes:
            if (ev := wait_until(sim, day)) is not None:
                yield ev
            self.approval_base[..., i] = rate
            self._refresh()

    def _refresh(self) -> None:
        """Rebuild the route masks from the controls in force."""
        N, K = self.sim.N, self.sim.K
        self.blocked[:] = 0.0
        self.licensing[:] = 0.0
        self.cover_extra_days = np.zeros((N, K))
        for i, c in enumerate(self.controls):
            if self.announced[i]:
                self.cover_extra_days += c.front_loading_cover_days * c.cover.any(axis=1)
            on = self.on[:, i][:, None, None, None]
            if c.form == "ban":
                self.blocked = np.maximum(self.blocked, on * c.cover)
            elif c.form == "licensing":
                self.licensing = np.maximum(self.licensing, on * c.cover)
                if self.own:  # the same per replication: [R, dest] approval, [R, ...] masks
                    base = self.approval_base[:, i][:, None]
                    approval = np.where(np.isnan(c.approval)[None], base, c.approval[None])
                    delay = self.delay_mean[:, i][:, None, None, None]
                    self.lic_mean = np.where(c.cover, delay, self.lic_mean)
                    self.lic_approval = np.where(c.cover, approval[:, :, None, None],
                                                 self.lic_approval)
                else:
                    approval = np.where(np.isnan(c.approval), self.approval_base[i], c.approval)
                    self.lic_mean = np.where(c.cover, c.delay_mean_days, self.lic_mean)
                    self.lic_approval = np.where(c.cover, approval[:, None, None],
                                                 self.lic_approval)
                self.lic_cv = np.where(c.cover, c.delay_cv, self.lic_cv)
        # what the per-tick rules need of the masks, made once per change rather than each tick
        self._delivered = 1.0 - self.licensing * (1.0 - self.lic_approval)
        lic = np.flatnonzero(self.licensing.reshape(-1))  # elements of [R, dest, origin, K]
        self.lic_elems = lic
        if lic.size:
            N, K = self.sim.N, self.sim.K
            r, route = np.divmod(lic, N * N * K)  # route: flat [dest, origin, K]
            d, o_k = np.divmod(route, N * K)  # o_k: flat [origin, K]
            # the delay's lognormal terms as lognormal_factor makes them (same shapes and order)
            cv = self.lic_cv[None]
            sig = np.sqrt(np.log1p(np.square(cv)))
            self.lic_sig = sig.reshape(-1)[route]
            self.lic_half_var = (0.5 * sig * sig).reshape(-1)[route]
            self.lic_elem_mean = self.lic_mean.reshape(-1)[lic if self.own else route]
            self.lic_elem_last = self.LL_each[r] - 1  # the longest delay, in ticks (LL - 1
            # when the replications share their levers)
            self.lic_rd = r * N + d  # (replication, destination) of each element's delay draw
            # its flat index in one queue slot [R, licensed dest, licensed column]
            self.lic_qbase = ((r * len(self.lic_dests) + self.dest_pos[d]) * len(self.lic_cols)
                              + self.col_pos[o_k])

    # ---- per-tick rules -------------------------------------------------------------------
    def allowed(self) -> np.ndarray:
        """Share of an order on each route buyers expect to get through (for sourcing)."""
        return 1.0 - self.blocked * (1.0 - self.leak_share)

    def expected_delay_ticks(self) -> np.ndarray:
        """Mean licence delay on each route in ticks (for buyers' supply-line target)."""
        return self.licensing * (self.lic_mean / self.sim.cal.tick_days)

    def restrict(self, t: int, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split orders into what may go directly and what leaks through third countries."""
        blocked = self.blocked
        direct = orders * (1.0 - blocked)
        stopped = orders * blocked
        for i, c in enumerate(self.controls):
            if c.form != "quota" or not self.on[:, i].any():
                continue
            on = self.on[:, i]
            covered = direct * c.cover
            asked = covered.sum(axis=(1, 2, 3))
            left = np.maximum(0.0, self._quota_allowance(t, c) - self.quota_used[:, i])
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(on & (asked > left), left / np.where(asked > 0, asked, 1.0), 1.0)
            cut = covered * (1.0 - scale)[:, None, None, None]
            direct = direct - cut
            stopped = stopped + cut
        return direct, stopped * self.leak_share

    def _quota_allowance(self, t: int, c: ExportControl) -> float:
        """Tonnes the quota allows from 1 January (or its start) to the end of tick t."""
        sim = self.sim
        year = sim.tick_year[t]
        if year != self.quota_year:
            self.quota_year = year
            self.quota_used[:] = 0.0
        tick_end = (t + 1) * sim.cal.tick_days
        since = max(sim.year_start_day[t], c.start_day)
        frac = min(1.0, max(0.0, (tick_end - since) / sim.year_days[t]))
        return c.quota_tpy * frac

    def count_quota(self, direct_shipped: np.ndarray) -> None:
        for i, c in enumerate(self.controls):
            if c.form == "quota":
                self.quota_used[:, i] += (direct_shipped * c.cover).sum(axis=(1, 2, 3)) * self.on[:, i]

    def delivered_share(self) -> np.ndarray:
        """Share of direct shipments buyers expect to arrive (licences may be refused)."""
        return self._delivered  # made by _refresh

    def queue_for_licences(self, t: int, shipped: np.ndarray, prov: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        """Put shipments on licensed routes in the licence queue; return the rest."""
        lic = self.lic_elems  # the licensed elements of [R, dest, origin, K] (_refresh)
        if not self.has_licensing or not lic.size:
            return shipped, prov
        sim = self.sim
        # one delay draw per replication and destination, as ever (same streams, same sizes)
        z = np.empty((sim.R, sim.N))
        for r, rng in enumerate(self.delay_rng):
            z[r] = rng.standard_normal(sim.N)
        # delays only where licensed: each element is computed with the operations of
        # lognormal_factor, in the same order, so it is the same number
        days = self.lic_elem_mean * np.exp(self.lic_sig * z.reshape(-1)[self.lic_rd]
                                           - self.lic_half_var)
        ticks = np.rint(days / sim.cal.tick_days)
        np.maximum(ticks, 1, out=ticks)  # np.clip(ticks, 1, LL - 1), without its overhead
        np.minimum(ticks, self.lic_elem_last, out=ticks)
        slot = (t + ticks.astype(np.int64)) % self.LL
        slots = slot * self.queue_slot_size + self.lic_qbase
        # each element goes to its own queue cell (no two share one), so a plain indexed add
        # is exact; elsewhere the licensing mask is 0 and nothing is held
        cells = np.concatenate((slots, slots + self.queue.size))  # quantity, provenance halves
        held = shipped.reshape(-1)[lic]
        self.queues.reshape(-1)[cells] += np.concatenate((held, prov.reshape(-1)[lic]))
        self.slot_used[slot[held != 0.0]] = True  # (a slot given only zeros still holds zeros)
        free, free_prov = shipped.copy(), prov.copy()
        free.reshape(-1)[lic] = 0.0
        free_prov.reshape(-1)[lic] = 0.0
        return free, free_prov

    def decide_licences(self, t: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Licences decided this tick: (approved, approved provenance, refused, refused prov),
        each [R, dest, origin, K]; None if no shipment waits for a decision this tick."""
        slot = t % self.LL
        sim = self.sim
        u = np.empty((sim.R, sim.N, sim.N, sim.K))
        for r, rng in enumerate(self.approve_rng):  # every draw, as ever
            u[r] = rng.random((sim.N, sim.N, sim.K))
        if not self.slot_used[slot]:  # an empty slot (the draws are made all the same)
            return None
        due = self.queues[:, slot].copy()  # [quantity, provenance] x [R, licensed dest, column]
        self.queues[:, slot] = 0.0
        self.slot_used[slot] = False
        R, N, K = sim.R, sim.N, sim.K
        dests, cols = self.lic_dests, self.lic_cols
        approval = self.lic_approval[:, dests] if self.own else self.lic_approval[None, dests]
        ok = (u[:, dests] < approval).reshape(R, len(dests), N * K)[..., cols].astype(float)
        out = np.zeros((2, 2, R, N, N * K))  # zero off licensed destinations and columns
        out[0][self.queue_cells] = due * ok
        out[1][self.queue_cells] = due * (1 - ok)
        out = out.reshape(2, 2, R, N, N, K)
        return out[0, 0], out[0, 1], out[1, 0], out[1, 1]

    def held_at_origin(self) -> np.ndarray:
        """Tonnes waiting for a licence, by exporter: [R, origin, K].

        The sum over the slots in use and the columns a licence can hold only: the rest
        holds zeros, and leaving out zeros from a sum taken in the same order (slot, then
        destination) gives the same number (tests/test_policy_speed.py)."""
        return queue_sum(self.queue, np.flatnonzero(self.slot_used), self.lic_cols,
                         self.sim.N, self.sim.K)

    def held_by_product(self) -> np.ndarray:
        """Tonnes waiting for a licence, by product: [R, K] (for the mass balance check)."""
        return self.held_at_origin().sum(axis=1)


def queue_sum(queue: np.ndarray, slots: np.ndarray, cols: np.ndarray, N: int, K: int
              ) -> np.ndarray:
    """Over the slots and destinations of a licence queue [slot, R, dest, column] that holds
    zeros outside `slots`, the tonnes of each (origin, product) [R, N, K]: the columns are
    the flat (origin * K + product) `cols` (at least two), the rest zero.

    Bit for bit the sum of the full [slot, R, dest, origin, K] queue over slots and
    destinations: numpy sums a C-ordered array slot by slot, destination by destination,
    and the terms left out are zeros."""
    R = queue.shape[1]
    out = np.zeros((R, N * K))
    if slots.size:
        out[:, cols] = queue[slots].sum(axis=(0, 2))
    return out.reshape(R, N, K)


# ------------------------------------------------------------------------- trade terms
class TradeTerms:
    """Tariffs, plurilateral minimum import prices and exporters' discounts on each route."""

    def __init__(self, sim: Simulation, levers: Levers) -> None:
        self.sim, self.lv = sim, levers
        N, K = sim.N, sim.K
        self.rate = np.zeros((N, N, K))  # ad-valorem duty
        self.min_price = np.zeros((N, N, K))  # club minimum import price, US$/kg (0: none)
        self.discount = np.zeros((N, N, K))
        self.tariff_rate = [0.0] * len(levers.tariffs)
        self.club_on = [False] * len(levers.price_clubs)
        self.disc_on = [False] * len(levers.export_discounts)
        self.duty_routes = np.zeros((N, N, K), dtype=bool)
        for tr in levers.tariffs:
            self.duty_routes |= tr.cover
        for cl in levers.price_clubs:
            self.duty_routes |= cl.cover
        self.disc_routes = np.zeros((N, N, K), dtype=bool)
        for d in levers.export_discounts:
            self.disc_routes |= d.cover
        self._refresh()  # nothing in force yet: zero rates (and the derived arrays)

    def processes(self):
        for i in range(len(self.lv.tariffs)):
            yield self.run_tariff(i)
        for i in range(len(self.lv.price_clubs)):
            yield self.run_window(self.club_on, i, self.lv.price_clubs[i])
        for i in range(len(self.lv.export_discounts)):
            yield self.run_window(self.disc_on, i, self.lv.export_discounts[i])

    def run_tariff(self, i: int):
        for day, rate in self.lv.tariffs[i].schedule:
            if (ev := wait_until(self.sim, day)) is not None:
                yield ev
            self.tariff_rate[i] = rate
            self._refresh()

    def run_window(self, flags: list[bool], i: int, lever):
        if (ev := wait_until(self.sim, lever.start_day)) is not None:
            yield ev
        flags[i] = True
        self._refresh()
        if lever.end_day < NEVER:
            if (ev := wait_until(self.sim, lever.end_day)) is not None:
                yield ev
            flags[i] = False
            self._refresh()

    def _refresh(self) -> None:
        self.rate[:] = 0.0
        for tr, r in zip(self.lv.tariffs, self.tariff_rate, strict=True):
            self.rate += r * tr.cover
        self.min_price[:] = 0.0
        for cl, on in zip(self.lv.price_clubs, self.club_on, strict=True):
            if on:
                self.min_price = np.maximum(self.min_price, cl.cover * cl.floor_usd_per_kg[None, None, :])
        self.discount[:] = 0.0
        for d, on in zip(self.lv.export_discounts, self.disc_on, strict=True):
            if on:
                self.discount = np.maximum(self.discount, d.cover * d.share)
        self.keep = 1.0 - self.discount  # share of the origin price an exporter charges
        # flat routes [dest, origin, K] where a duty or a discount can be non-zero now: on the
        # others charge() would add zeros, so it skips them
        e = self.duty_routes_now = np.flatnonzero((self.rate != 0) | (self.min_price != 0))
        self.rate_now, self.min_price_now = self.rate.reshape(-1)[e], self.min_price.reshape(-1)[e]
        e = self.disc_routes_now = np.flatnonzero(self.discount != 0)
        self.discount_now = self.discount.reshape(-1)[e]
        self.discount_div_now = np.maximum(1.0 - self.discount_now, 1e-12)
        self._duty_of = None  # (offer, its duty on duty_routes_now), see charge()

    def offer_price(self, origin_price: np.ndarray) -> np.ndarray:
        """Price an exporter charges on each route: [R, dest, origin, K] US$/kg."""
        return origin_price[:, None, :, :] * self.keep[None]

    @staticmethod
    def _duty(offer: np.ndarray, rate: np.ndarray, min_price: np.ndarray) -> np.ndarray:
        """Duty per kg: ad valorem plus the club's top-up to its minimum price."""
        return offer * rate + np.maximum(0.0, min_price - offer)

    def duty_per_kg(self, offer: np.ndarray) -> np.ndarray:
        """Import duty on each route [R, dest, origin, K] US$/kg."""
        return self._duty(offer, self.rate[None], self.min_price[None])

    def charge(self, qty: np.ndarray, offer: np.ndarray, tariff_revenue: np.ndarray,
               discount_cost: np.ndarray, add: Callable[..., None]) -> None:
        """Add the duties and discounts on shipments `qty` [R, dest, origin, K] t sold at
        `offer` to the records [R, month, dest, origin, K] US$, with `add(record, values,
        columns)` (Simulation.add_by_month: this tick's month or months).

        Only routes with a duty or a discount in force are computed; each of their elements
        gets the arithmetic of duty_per_kg (_duty), so the sums are unchanged."""
        R = qty.shape[0]
        q, o = qty.reshape(R, -1), offer.reshape(R, -1)
        e = self.duty_routes_now
        if e.size:
            # a tick ships up to three loads at one offer (an unchanged array): duty it once
            if self._duty_of is None or self._duty_of[0] is not offer:
                self._duty_of = (offer, self._duty(o[:, e], self.rate_now, self.min_price_now))
            add(tariff_revenue.reshape(R, tariff_revenue.shape[1], -1),
                q[:, e] * self._duty_of[1] * 1000, e)
        e = self.disc_routes_now
        if e.size:
            add(discount_cost.reshape(R, discount_cost.shape[1], -1),
                q[:, e] * (o[:, e] / self.discount_div_now) * self.discount_now * 1000, e)


# ------------------------------------------------------------------------- stockpiles
class Stockpiles:
    """Strategic reserves: buy in calm markets within a budget, release in shortages."""

    def __init__(self, sim: Simulation, levers: Levers) -> None:
        self.sim = sim
        self.piles = piles = levers.stockpiles
        R, K, P = sim.R, sim.K, len(piles)
        self.level = np.zeros((R, P, K))
        for p, sp in enumerate(piles):
            self.level[:, p] = sp.initial_tonnes
        self.prov = np.zeros((R, P, K))  # initial holdings: provenance unknown, counted as non-traced
        self.spent = np.zeros((R, P))
        self.releasing = np.zeros((R, P, K), dtype=bool)
        month_share = np.array([sp.release_share_per_month for sp in piles])
        self.release_tick_share = 1.0 - (1.0 - month_share) ** (sim.cal.tick_days / MONTH_DAYS)
        self.holder_cols = np.array([sp.holder * K for sp in piles], dtype=np.int64)
        self.orders = np.zeros((R, P, sim.N, K))
        self.any_members_only = any(sp.members_only for sp in piles)
        # per-pile constants of the per-tick rules, made once (each as the rule computed it)
        td, years = sim.cal.tick_days, sim.cal.tick_days / 365.25
        self.most_per_use = [sp.max_purchase_days_per_year / 365.25 * td for sp in piles]
        # the highest price a pile pays by origin; -inf where it does not buy (never cheap)
        self.cap_price = [np.where(sp.buy_origins[:, None], sp.price_cap_multiple * sim.p0_origin,
                                   -np.inf) for sp in piles]
        self.interest = [sp.loan_usd * sp.loan_rate_per_year * years for sp in piles]
        self.fees = [np.full((R, 1), sp.member_fees_usd_per_year * years) for sp in piles]
        markets = [sim.w.region_market[sp.holder] for sp in piles]
        self.holder_market = markets
        self.price_cols = [m * K + np.arange(K) for m in markets]  # flat (market, product)
        self.p0_holder = [sim.p0_flat[c] for c in self.price_cols]
        self.sale_price = [sim.w.price0_usd_per_kg[m][None] * sp.sale_price_multiple
                           for m, sp in zip(markets, piles, strict=True)]
        self.ordering = False  # whether any order was placed this tick (else receive is a no-op)

    def total_by_product(self) -> np.ndarray:
        return self.level.sum(axis=1)

    def _active(self, p: int) -> bool:
        return self.sim.env.now >= self.piles[p].start_day - 1e-9

    def release_to_market(self, need: np.ndarray, stock: np.ndarray, prices: np.ndarray) -> None:
        """Reserves open to all users top up their region's input stock in a shortage (or sell
        above a price trigger); `need` and `stock` are [R, N*K] and `stock` is updated."""
        K = self.sim.K
        for p, sp in enumerate(self.piles):
            if sp.members_only:
                continue
            cols = self.holder_cols[p] + np.arange(K)
            nd, st = need[:, cols], stock[:, cols]
            gap = np.maximum(0.0, nd - st)
            with np.errstate(divide="ignore", invalid="ignore"):
                short = (nd > 0) & (gap / np.where(nd > 0, nd, 1.0) > sp.release_shortfall)
            price_x = prices[:, self.price_cols[p]] / self.p0_holder[p]
            dear = price_x > sp.release_price_multiple
            cap = self.level[:, p] * self.release_tick_share[p]
            qty = np.where(sp.products, np.minimum(cap, np.where(short, gap, 0.0) + np.where(dear, cap, 0.0)),
                           0.0)
            self.releasing[:, p] = qty > 0
            if not qty.any():
                continue
            self._take(p, qty, to_stock_cols=cols, stock=stock)

    def release_to_members(self, demand: np.ndarray, served: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray] | None:
        """Reserves for members serve members' unserved demand directly. Returns (t, provenance t)
        added to each end use's consumption: [R, S] each, or None if no reserve released
        anything (they would be zeros). `served` is updated."""
        sim = self.sim
        extra = np.zeros_like(served)
        extra_prov = np.zeros_like(served)
        released = False
        for p, sp in enumerate(self.piles):
            if not sp.members_only:
                continue
            members = sp.member_sectors
            unserved = np.where(members, demand - served, 0.0)  # R, S
            if not unserved.any():  # every member served: nothing wanted, nothing released
                self.releasing[:, p] = False
                continue
            wanted = unserved @ sim.SEK  # R, K
            asked = np.where(members, demand, 0.0) @ sim.SEK
            with np.errstate(divide="ignore", invalid="ignore"):
                short = (asked > 0) & (wanted / np.where(asked > 0, asked, 1.0) > sp.release_shortfall)
            cap = self.level[:, p] * self.release_tick_share[p]
            qty = np.where(short & sp.products, np.minimum(cap, wanted), 0.0)
            self.releasing[:, p] = qty > 0
            if not qty.any():
                continue
            share = self.prov[:, p] / np.where(self.level[:, p] > 0, self.level[:, p], 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(wanted > 0, qty / np.where(wanted > 0, wanted, 1.0), 0.0)  # R, K
            give = unserved * frac[:, sim.w.sector_product]
            extra += give
            extra_prov += give * share[:, sim.w.sector_product]
            self._take(p, qty)
            released = True
        if not released:
            return None
        served += extra
        return extra, extra_prov

    def _take(self, p: int, qty: np.ndarray, to_stock_cols=None, stock=None) -> None:
        sim, sp = self.sim, self.piles[p]
        share = self.prov[:, p] / np.where(self.level[:, p] > 0, self.level[:, p], 1.0)
        self.level[:, p] -= qty
        np.maximum(self.level[:, p], 0.0, out=self.level[:, p])
        self.prov[:, p] -= qty * share
        np.maximum(self.prov[:, p], 0.0, out=self.prov[:, p])
        if to_stock_cols is not None:
            stock[:, to_stock_cols] += qty
            sim.in_prov.reshape(sim.R, -1)[:, to_stock_cols] += qty * share
        if np.isnan(sp.sale_price_multiple):  # sold at the market price
            price = np.exp(sim.log_price[:, self.holder_market[p]])  # R, K
        else:
            price = self.sale_price[p]
        sim.record_lever("stockpile_release", p, qty)
        sim.record_lever("stockpile_cash_received", p, (qty * price).sum(axis=1, keepdims=True) * 1000)

    def place_orders(self, sourcing: np.ndarray, use_exp: np.ndarray, origin_ok: np.ndarray,
                     origin_price: np.ndarray) -> np.ndarray:
        """Purchase orders of every reserve by origin: [R, P, origin, K] t this tick."""
        sim = self.sim
        R, N, K = sim.R, sim.N, sim.K
        self.orders = np.zeros((R, len(self.piles), N, K))
        self.ordering = False  # whether a pile orders anything (else receive adds zeros)
        for p, sp in enumerate(self.piles):
            if not self._active(p):
                continue
            d = sp.holder
            per_day = use_exp[:, d] / sim.cal.tick_days  # R, K
            target = sp.target_days * per_day
            most = self.most_per_use[p] * per_day
            want = np.minimum(most, np.maximum(0.0, target - self.level[:, p]) * sim.a_stock)
            want = np.where(sp.products[None] & ~self.releasing[:, p], want, 0.0)
            if not want.any():  # the order would be zeros, as it stands (self.orders)
                continue
            # cheap enough, from an origin it buys from (x * a * b is x * (a & b) for flags)
            cheap = origin_price <= self.cap_price[p][None]  # R, o, K
            weight = sourcing[:, d] * origin_ok[:, d] * cheap
            total = weight.sum(axis=1, keepdims=True)
            weight = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
            order = weight * want[:, None, :]  # R, o, K
            cost = (order * origin_price).sum(axis=(1, 2)) * 1000
            left = np.maximum(0.0, sp.budget_usd - self.spent[:, p])
            scale = np.where(cost > left, left / np.where(cost > 0, cost, 1.0), 1.0)
            self.orders[:, p] = order * scale[:, None, None]
            self.ordering = True
        return self.orders

    def receive(self, fill: np.ndarray, prov_share: np.ndarray, origin_price: np.ndarray) -> None:
        """Take delivery of filled orders at the origin (the engine takes them off the
        sellers' stock with the other orders)."""
        if not self.ordering:  # no pile is buying: all of the below would add zeros
            return
        got = self.orders * fill[:, None]
        bought = got.sum(axis=2)  # R, P, K
        self.level += bought
        self.prov += (got * prov_share[:, None]).sum(axis=2)
        cost = (got * origin_price[:, None]).sum(axis=(2, 3)) * 1000  # R, P
        self.spent += cost
        for p in range(len(self.piles)):
            self.sim.record_lever("stockpile_purchases", p, bought[:, p])
            self.sim.record_lever("stockpile_cash_spent", p, cost[:, p:p + 1])

    def account(self) -> None:
        """Holding cost, loan interest and member fees of this tick."""
        sim = self.sim
        years = sim.cal.tick_days / 365.25
        for p, sp in enumerate(self.piles):
            if not self._active(p):
                continue
            value = (self.level[:, p] * np.exp(sim.log_price[:, self.holder_market[p]])).sum(axis=1) * 1000
            hold = value * sp.holding_cost_share_per_year * years
            sim.record_lever("stockpile_cash_spent", p, (hold + self.interest[p])[:, None])
            sim.record_lever("stockpile_cash_received", p, self.fees[p])


# ------------------------------------------------------------------------- price floors
class PriceFloors:
    """Guaranteed minimum prices for covered plants; the state pays the gap (and may buy)."""

    def __init__(self, sim: Simulation, levers: Levers) -> None:
        self.sim = sim
        self.floors = levers.price_floors
        w = sim.w
        self.regions = np.array([w.fac_region[np.flatnonzero(f.facilities)[0]] for f in self.floors],
                                dtype=np.int64)
        self.offtake_stock = np.zeros((sim.R, len(self.floors), sim.K))
        # yield of the covered product per t of activity of each covered plant: (Q, F)
        self.yields = np.array([f.facilities * w.fac_outputs[:, f.product] for f in self.floors]
                               ).reshape(len(self.floors), len(w.facilities))

    def in_force(self, q: int) -> bool:
        f = self.floors[q]
        return f.start_day - 1e-9 <= self.sim.env.now < f.end_day - 1e-9

    def _price(self, q: int, prices: np.ndarray) -> np.ndarray:
        f = self.floors[q]
        return prices[:, self.sim.w.region_market[self.regions[q]] * self.sim.K + f.product]

    def revenue_bonus(self, prices: np.ndarray) -> np.ndarray:
        """Extra revenue per t of activity the floor guarantees each plant: [R, F] US$/kg."""
        bonus = np.zeros((self.sim.R, len(self.sim.w.facilities)))
        for q, f in enumerate(self.floors):
            if self.in_force(q):
                gap = np.maximum(0.0, f.floor_usd_per_kg - self._price(q, prices))
                bonus += gap[:, None] * self.yields[q][None]
        return bonus

    def expected_price_ratio(self, ratio: np.ndarray) -> np.ndarray:
        """Owners of covered plants invest on the floor when it is above the expected price."""
        w = self.sim.w
        for q, f in enumerate(self.floors):
            if self.in_force(q):
                covered = f.facilities & (w.fac_main_output == f.product)
                p0 = w.price0_usd_per_kg[w.region_market[w.fac_region], w.fac_main_output]
                ratio = np.where(covered[None], np.maximum(ratio, f.floor_usd_per_kg / p0[None]), ratio)
        return ratio

    def settle(self, activity: np.ndarray, prices: np.ndarray, out_stock: np.ndarray,
               out_prov: np.ndarray, seller_target: np.ndarray) -> None:
        """Pay the gap on covered output, take the upside share, buy what the market leaves."""
        sim, K = self.sim, self.sim.K
        for q, f in enumerate(self.floors):
            if not self.in_force(q):
                continue
            volume = activity @ self.yields[q]  # R, t this tick
            n, k = self.regions[q], f.product
            off = np.zeros(sim.R)
            if f.offtake:
                excess = np.maximum(0.0, out_stock[:, n, k] - seller_target[:, n * K + k])
                off = np.minimum(volume, excess)
                share = out_prov[:, n, k] / np.where(out_stock[:, n, k] > 0, out_stock[:, n, k], 1.0)
                out_stock[:, n, k] -= off
                out_prov[:, n, k] -= off * share
                self.offtake_stock[:, q, k] += off
            price = self._price(q, prices)
            sold = volume - off
            gap = sold * np.maximum(0.0, f.floor_usd_per_kg - price) * 1000
            upside = sold * f.upside_share * np.maximum(0.0, price - f.upside_above_usd_per_kg) * 1000
            sim.record_lever("floor_covered_output", q, volume[:, None])
            sim.record_lever("floor_gap_payments", q, gap[:, None])
            sim.record_lever("floor_upside_received", q, upside[:, None])
            sim.record_lever("floor_offtake", q, off[:, None])
            sim.record_lever("floor_offtake_cost", q, (off * f.floor_usd_per_kg * 1000)[:, None])

    def total_by_product(self) -> np.ndarray:
        return self.offtake_stock.sum(axis=1)


# ------------------------------------------------------------------------- capacity deals
class CapacityDeals:
    """Announced capacity additions: funded on announcement, online after a random lead time
    (or never), with their output contracted by offtake buyers."""

    def __init__(self, sim: Simulation, levers: Levers) -> None:
        self.sim, self.lv = sim, levers
        self.contracted = np.zeros((sim.R, sim.N, sim.N, sim.K))  # t per tick [R, dest, origin, K]

    def processes(self):
        for a in range(len(self.lv.capacity_additions)):
            yield self.announce(a)

    def announce(self, a: int):
        sim, ca = self.sim, self.lv.capacity_additions[a]
        if (ev := wait_until(sim, ca.announce_day)) is not None:
            yield ev
        sim.record_lever("capacity_funding", a, np.full((sim.R, 1), ca.funding_usd))
        mult = self.lv.permitting.multiple(ca.facility, sim.env.now)
        for r, rep in enumerate(sim.reps):
            rng = stream(sim.seed, int(rep), f"capacity/{ca.name}")
            fails = rng.random() < ca.failure_probability
            lead = ca.lead_days * mult * float(lognormal_factor(rng.standard_normal(), ca.lead_cv))
            if not fails:
                sim.env.process(self.commission(a, r, lead))

    def commission(self, a: int, r: int, lead_days: float):
        sim, ca = self.sim, self.lv.capacity_additions[a]
        yield sim.env.timeout(lead_days)
        f = ca.facility
        w = sim.w
        per_tick = ca.capacity_tpy / sim.cal.ticks_per_year
        sim.capacity[r, f] += per_tick
        k = w.fac_main_output[f]
        made = per_tick * sim.worlds[r].fac_utilisation[f] * w.fac_outputs[f, k]
        self.contracted[r, :, w.fac_region[f], k] += made * ca.offtake
        sim.record_lever("capacity_online", a, np.eye(sim.R)[r][:, None] * ca.capacity_tpy)


def apply_contracts(base: np.ndarray, contracted: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Sourcing weights with contracted offtake first: a buyer takes its contracts (up to its
    need) and splits the rest of its need by `base`. Arrays [R, dest, origin, K]; need [R, dest, K]."""
    total = contracted.sum(axis=2, keepdims=True)
    need4 = need[:, :, None, :]
    frac = np.minimum(1.0, np.divide(total, need4, out=np.zeros_like(total), where=need4 > 0))
    contract_share = np.divide(contracted, total, out=np.zeros_like(contracted), where=total > 0)
    return frac * contract_share + (1.0 - frac) * base


"""The levers' fast paths (core/policy.py) compute exactly what the plain numpy forms they
replace compute: results must not move by one ulp (a change in one price makes a run diverge)."""

from types import SimpleNamespace

import numpy as np

from critmin.core.levers import ExportDiscount, Levers, PriceClub, Tariff
from critmin.core.policy import TradeTerms, lognormal_factor, queue_sum


def test_licence_queue_over_licensed_destinations_sums_like_the_full_queue():
    """The queue keeps only destinations a licensing control covers; its sums over slots and
    destinations (held_at_origin, held_by_product) add the same terms in the same order."""
    rng = np.random.default_rng(1)
    LL, R, N, K = 13, 3, 9, 5
    for dests in ([2], [1, 4, 7], list(range(N))):
        full = np.zeros((LL, R, N, N, K))
        vals = rng.random((LL, R, len(dests), N, K)) * 10.0 ** rng.integers(-6, 6, (LL, R, len(dests), N, K))
        full[:, :, dests] = vals * (rng.random(vals.shape) > 0.4)
        compact = np.ascontiguousarray(full[:, :, dests])
        assert np.array_equal(compact.sum(axis=(0, 2)), full.sum(axis=(0, 2)))
        assert np.array_equal(compact.sum(axis=(0, 2, 3)), full.sum(axis=(0, 2, 3)))


def test_licence_queue_sum_over_used_slots_and_columns_equals_the_full_sum():
    """The licence queue keeps only the columns a licence can hold, and held_at_origin sums only
    its slots in use: the same numbers as the sum over the whole [slot, R, dest, origin, K]
    queue, whatever the shapes (one column is padded to two, as ExportControls does)."""
    rng = np.random.default_rng(4)
    for S, R, D, N, K, n_cols in [(56, 10, 8, 9, 5, 2), (30, 3, 4, 6, 2, 1), (56, 1, 8, 9, 5, 1),
                                  (20, 4, 1, 9, 5, 45), (13, 2, 3, 4, 3, 5)]:
        queue = np.zeros((S, R, D, N, K))
        cols = np.sort(rng.choice(N * K, n_cols, replace=False))
        slots = np.sort(rng.choice(S, max(1, S // 3), replace=False))
        shape = (len(slots), R, D, n_cols)
        vals = rng.random(shape) * 10.0 ** rng.integers(-6, 6, shape)
        flat = queue.reshape(S, R, D, N * K)
        flat[np.ix_(slots, range(R), range(D), cols)] = vals * (rng.random(shape) > 0.3)
        if cols.size == 1:
            cols = np.append(cols, (cols[0] + 1) % (N * K))
        compact = np.ascontiguousarray(flat[..., cols])  # the queue as ExportControls keeps it
        assert np.array_equal(queue_sum(compact, slots, cols, N, K), queue.sum(axis=(0, 2)))


def test_licence_delays_on_licensed_elements_equal_the_full_array_form():
    """Delays are computed only where licensed; each element must be the same number."""
    rng = np.random.default_rng(2)
    R, N, K = 4, 9, 5
    mean = rng.uniform(10, 90, (N, N, K))
    cv = rng.uniform(0.0, 1.5, (N, N, K))
    z = rng.standard_normal((R, N))
    full = mean[None] * lognormal_factor(z[:, :, None, None], cv[None])
    elems = np.flatnonzero(rng.random(R * N * N * K) > 0.8)
    r, route = elems // (N * N * K), elems % (N * N * K)
    d = route // (N * K)
    sig = np.sqrt(np.log1p(np.square(cv[None])))
    part = mean.reshape(-1)[route] * np.exp(sig.reshape(-1)[route] * z[r, d]
                                            - (0.5 * sig * sig).reshape(-1)[route])
    assert np.array_equal(part, full.reshape(-1)[elems])


def add_to_month(mi: int):
    """Simulation.add_by_month for a tick wholly in month `mi`."""
    def add(rec: np.ndarray, values: np.ndarray, cols: np.ndarray) -> None:
        rec[:, mi, cols] += values
    return add


def test_duties_and_discounts_charged_on_covered_routes_equal_the_full_array_form():
    rng = np.random.default_rng(3)
    R, N, K, MT = 3, 6, 4, 5
    cover = lambda p: rng.random((N, N, K)) < p  # noqa: E731
    lv = Levers(
        tariffs=(Tariff("t", cover(0.3), ((0.0, 0.25),)),),
        price_clubs=(PriceClub("c", cover(0.3), rng.uniform(5, 50, K), 0.0, np.inf),),
        export_discounts=(ExportDiscount("d", cover(0.3), 0.2, 0.0, np.inf),),
    )
    terms = TradeTerms(SimpleNamespace(N=N, K=K), lv)
    terms.tariff_rate[0], terms.club_on[0], terms.disc_on[0] = 0.25, True, True
    terms._refresh()
    tariff, discount = np.zeros((R, MT, N, N, K)), np.zeros((R, MT, N, N, K))
    want_t, want_d = tariff.copy(), discount.copy()
    for mi in (0, 0, 3):
        offer = terms.offer_price(rng.uniform(1, 60, (R, N, K)))
        for _ in range(3):  # a tick ships several loads at one offer
            qty = rng.random((R, N, N, K)) * (rng.random((R, N, N, K)) > 0.3)
            terms.charge(qty, offer, tariff, discount, add_to_month(mi))
            want_t[:, mi] += qty * terms.duty_per_kg(offer) * 1000
            want_d[:, mi] += qty * (offer / np.maximum(
                1.0 - terms.discount[None], 1e-12)) * terms.discount[None] * 1000
    assert np.array_equal(tariff, want_t) and np.array_equal(discount, want_d)
    assert tariff.any() and discount.any()


def test_licence_queue_sums_and_decisions_skip_only_empty_slots():
    """held_at_origin sums only the slots in use, and decide_licences skips a slot with nothing
    due: in a run with licensing, each sum equals the full queue's, bit for bit, and a slot
    skipped holds only zeros."""
    from critmin.cli import compose
    from critmin.config.model import build_model
    from critmin.core.engine import Simulation

    spec, world, levers = build_model(compose(["scenario=china_licensing_2025",
                                               "run.horizon_years=3"]))
    sim = Simulation(world, spec.calendar, [0, 1, 2], spec.seed, levers=levers)
    ctl = sim.controls
    held, decide = ctl.held_at_origin, ctl.decide_licences
    seen = {"partial": 0, "empty": 0, "skipped": 0, "decided": 0}

    def checked_held():
        used = int(ctl.slot_used.sum())
        kind = "empty" if used == 0 else "partial" if used < len(ctl.slot_used) else "full"
        seen[kind] = seen.get(kind, 0) + 1
        out = held()
        full = np.zeros((*ctl.queue.shape[:3], sim.N * sim.K))  # [slot, R, dest, origin x K]
        full[..., ctl.lic_cols] = ctl.queue
        assert np.array_equal(out, full.reshape(*full.shape[:3], sim.N, sim.K).sum(axis=(0, 2)))
        return out

    def checked_decide(t):
        due = ctl.queues[:, t % ctl.LL].copy()
        out = decide(t)
        seen["skipped" if out is None else "decided"] += 1
        if out is None:
            assert not due.any()
        return out

    ctl.held_at_origin, ctl.decide_licences = checked_held, checked_decide
    sim.run()
    assert seen["partial"] > 10 and seen["empty"] > 10  # both shortcuts were taken
    assert seen["skipped"] > 10 and seen["decided"] > 10

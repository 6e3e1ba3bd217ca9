from __future__ import annotations

from collections import deque
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from schemas.events import Priority
from stream.engine.scheduler import PriorityScheduler

C, H, N, L = Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW
NO_AGING = 1e9


def _scheduler(max_in_flight: int = 100, aging: float = NO_AGING) -> PriorityScheduler[str]:
    return PriorityScheduler(max_in_flight=max_in_flight, aging_seconds=aging)


def _drain(sched: PriorityScheduler[str], now: float = 0.0) -> list[str]:
    """Pop and complete one at a time until nothing is runnable."""
    out: list[str] = []
    while (popped := sched.pop_ready(now)) is not None:
        key, item = popped
        out.append(item)
        sched.complete(key, now)
    return out


# --- basic rules ------------------------------------------------------------------------------


def test_empty_scheduler_has_nothing_ready() -> None:
    """pop_ready on an empty scheduler returns None."""
    assert _scheduler().pop_ready(0.0) is None


def test_constructor_validates_limits() -> None:
    """max_in_flight below 1 or non-positive aging is rejected."""
    with pytest.raises(ValueError):
        _scheduler(max_in_flight=0)
    with pytest.raises(ValueError):
        _scheduler(aging=0)
    sched = _scheduler()
    with pytest.raises(ValueError):
        sched.max_in_flight = 0


def test_one_session_leaves_in_push_order() -> None:
    """Items of one session are popped in push order whatever their priorities."""
    sched = _scheduler()
    for i, prio in enumerate([L, C, N, H, C]):
        sched.push("s", prio, f"m{i}", now=0.0)
    assert _drain(sched) == ["m0", "m1", "m2", "m3", "m4"]


def test_at_most_one_item_per_session_in_flight() -> None:
    """A session with an item in flight is not served again until it completes."""
    sched = _scheduler()
    sched.push("s", N, "a", 0.0)
    sched.push("s", N, "b", 0.0)
    assert sched.pop_ready(0.0) == ("s", "a")
    assert sched.pop_ready(0.0) is None
    sched.complete("s", 1.0)
    assert sched.pop_ready(1.0) == ("s", "b")


def test_max_in_flight_caps_concurrency() -> None:
    """No more than max_in_flight items are handed out before some complete."""
    sched = _scheduler(max_in_flight=2)
    for key in "abc":
        sched.push(key, N, key, 0.0)
    assert sched.pop_ready(0.0) is not None
    assert sched.pop_ready(0.0) is not None
    assert sched.pop_ready(0.0) is None
    assert sched.in_flight == 2
    sched.complete("a", 0.0)
    assert sched.pop_ready(0.0) == ("c", "c")


def test_lowering_max_in_flight_waits_for_running_items() -> None:
    """Lowering max_in_flight below the current in-flight count blocks pops until it falls."""
    sched = _scheduler(max_in_flight=3)
    for key in "abcd":
        sched.push(key, N, key, 0.0)
    for _ in range(3):
        sched.pop_ready(0.0)
    sched.max_in_flight = 1
    sched.complete("a", 0.0)
    assert sched.pop_ready(0.0) is None
    sched.complete("b", 0.0)
    sched.complete("c", 0.0)
    assert sched.pop_ready(0.0) == ("d", "d")


def test_levels_are_served_most_urgent_first() -> None:
    """Ready lanes are served critical > high > normal > low."""
    sched = _scheduler()
    sched.push("low", L, "low", 0.0)
    sched.push("normal", N, "normal", 0.0)
    sched.push("high", H, "high", 0.0)
    sched.push("crit", C, "crit", 0.0)
    assert _drain(sched) == ["crit", "high", "normal", "low"]


def test_fifo_within_a_level_by_ready_time() -> None:
    """Lanes of the same level are served in the order they became ready."""
    sched = _scheduler()
    sched.push("b", N, "b", 1.0)
    sched.push("a", N, "a", 2.0)
    sched.push("c", N, "c", 3.0)
    assert _drain(sched, 3.0) == ["b", "a", "c"]


def test_completed_lane_queues_behind_lanes_ready_earlier() -> None:
    """A lane that becomes ready again on completion takes its turn after lanes waiting longer."""
    sched = _scheduler()
    sched.push("a", N, "a1", 0.0)
    sched.push("a", N, "a2", 0.0)
    assert sched.pop_ready(0.0) == ("a", "a1")
    sched.push("b", N, "b1", 1.0)
    sched.complete("a", 2.0)
    assert sched.pop_ready(2.0) == ("b", "b1")
    assert sched.pop_ready(2.0) == ("a", "a2")


def test_priority_inheritance_lifts_the_lane() -> None:
    """A critical item queued behind a low head lifts its whole lane to critical."""
    sched = _scheduler()
    sched.push("other", H, "other-high", 0.0)
    sched.push("s", L, "s-low", 1.0)
    sched.push("s", C, "s-crit", 2.0)
    assert _drain(sched, 2.0) == ["s-low", "s-crit", "other-high"]


def test_inherited_lane_keeps_its_ready_time() -> None:
    """A lane lifted to a level keeps the ready time it had, so it precedes later lanes there."""
    sched = _scheduler()
    sched.push("early", L, "early-low", 0.0)
    sched.push("late", C, "late-crit", 1.0)
    sched.push("early", C, "early-crit", 2.0)
    assert sched.pop_ready(2.0) == ("early", "early-low")


def test_lane_level_falls_back_after_its_urgent_item_leaves() -> None:
    """Once the critical item has run, the lane competes at the level of what remains."""
    sched = _scheduler()
    sched.push("s", C, "s-crit", 0.0)
    sched.push("s", L, "s-low", 0.0)
    sched.push("x", N, "x-normal", 0.0)
    assert sched.pop_ready(0.0) == ("s", "s-crit")
    sched.complete("s", 0.0)
    assert _drain(sched, 0.0) == ["x-normal", "s-low"]


def test_aging_makes_a_waiting_lane_more_urgent() -> None:
    """A low lane that waited aging_seconds * k counts as k levels more urgent."""
    sched = _scheduler(aging=1.0)
    sched.push("old", L, "old-low", 0.0)
    sched.push("new", H, "new-high", 2.0)
    # At t=2.0 the low lane counts as high (3 - 2 = 1) and became ready earlier.
    assert sched.pop_ready(2.0) == ("old", "old-low")


def test_aging_is_capped_at_high_so_critical_always_goes_first() -> None:
    """However long a lane waited, it never counts as critical; at high, ties go to the lane
    ready first."""
    sched = _scheduler(aging=1.0)
    sched.push("low", L, "low", 0.0)
    sched.push("crit", C, "crit", 50.0)
    sched.push("high", H, "high", 60.0)
    assert _drain(sched, 100.0) == ["crit", "low", "high"]


def test_a_lane_holding_a_critical_item_keeps_its_place_as_it_drains() -> None:
    """The items ahead of a critical one run back to back: after each, the lane is ready since
    its critical item arrived, ahead of critical lanes that arrived later."""
    sched = _scheduler(max_in_flight=1)
    for i in range(3):
        sched.push("s", L, f"s-low{i}", 0.0)
    sched.push("s", C, "s-crit", 1.0)
    sched.push("t", C, "t-crit", 2.0)
    order = []
    now = 3.0
    while (popped := sched.pop_ready(now)) is not None:
        order.append(popped[1])
        sched.complete(popped[0], now)
        now += 1.0
    assert order == ["s-low0", "s-low1", "s-low2", "s-crit", "t-crit"]


def test_aging_not_yet_enough() -> None:
    """Before a full aging period has passed, levels decide."""
    sched = _scheduler(aging=1.0)
    sched.push("old", N, "old-normal", 0.0)
    sched.push("new", H, "new-high", 0.5)
    assert sched.pop_ready(0.9) == ("new", "new-high")


def test_complete_without_in_flight_raises() -> None:
    """Completing a session with nothing in flight is a caller bug and raises ValueError."""
    sched = _scheduler()
    with pytest.raises(ValueError):
        sched.complete("nobody", 0.0)
    sched.push("s", N, "a", 0.0)
    with pytest.raises(ValueError):
        sched.complete("s", 0.0)


def test_remove_queued_returns_matching_items_in_push_order() -> None:
    """remove_queued removes queued matches in push order and leaves in-flight items alone."""
    sched = _scheduler()
    sched.push("a", N, "p1:a1", 0.0)
    sched.push("b", N, "p2:b1", 0.0)
    sched.push("a", N, "p1:a2", 0.0)
    sched.push("c", L, "p1:c1", 0.0)
    sched.push("b", N, "p1:b2", 0.0)
    assert sched.pop_ready(0.0) == ("a", "p1:a1")
    removed = sched.remove_queued(lambda item: item.startswith("p1:"))
    assert removed == ["p1:a2", "p1:c1", "p1:b2"]
    assert sched.queued == 1
    assert sched.in_flight == 1
    assert not sched.is_idle("a")  # still in flight
    assert sched.is_idle("c")
    sched.complete("a", 0.0)
    assert sched.is_idle("a")
    assert _drain(sched) == ["p2:b1"]


def test_remove_queued_with_a_raising_predicate_changes_nothing() -> None:
    """If the predicate raises, no item is removed or lost."""
    sched = _scheduler()
    sched.push("a", N, "a1", 0.0)
    sched.push("b", N, "boom", 0.0)

    def predicate(item: str) -> bool:
        if item == "boom":
            raise RuntimeError(item)
        return True

    with pytest.raises(RuntimeError):
        sched.remove_queued(predicate)
    assert sched.queued == 2
    assert _drain(sched) == ["a1", "boom"]


def test_remove_queued_lowers_an_inherited_level() -> None:
    """Removing a lane's critical item makes the lane compete at its remaining level again."""
    sched = _scheduler()
    sched.push("s", L, "keep-low", 0.0)
    sched.push("s", C, "drop-crit", 0.0)
    sched.push("x", H, "x-high", 1.0)
    assert sched.remove_queued(lambda item: item.startswith("drop")) == ["drop-crit"]
    assert _drain(sched, 1.0) == ["x-high", "keep-low"]


def test_introspection_counts() -> None:
    """queued, depth_by_priority, session_count and is_idle reflect the lanes."""
    sched = _scheduler()
    sched.push("a", C, "a1", 0.0)
    sched.push("a", L, "a2", 0.0)
    sched.push("b", L, "b1", 0.0)
    assert sched.queued == 3
    assert sched.depth_by_priority() == {C: 1, H: 0, N: 0, L: 2}
    assert sched.session_count == 2
    assert not sched.is_idle("a")
    assert sched.is_idle("zzz")
    assert sched.pop_ready(0.0) == ("a", "a1")
    assert sched.depth_by_priority() == {C: 0, H: 0, N: 0, L: 2}
    assert set(sched.sessions()) == {"a", "b"}


def test_empty_lane_is_dropped_after_completion() -> None:
    """A lane with nothing queued is dropped once its in-flight item completes."""
    sched = _scheduler()
    sched.push("s", N, "a", 0.0)
    sched.pop_ready(0.0)
    assert sched.session_count == 1
    sched.complete("s", 0.0)
    assert sched.session_count == 0
    assert sched.is_idle("s")


def test_heaps_stay_bounded_under_repeated_inheritance() -> None:
    """Repeated priority lifts and removals do not grow the internal heaps without bound."""
    sched = _scheduler()
    for i in range(2000):
        key = f"s{i % 10}"
        sched.push(key, L, f"low{i}", float(i))
        sched.push(key, C, f"crit{i}", float(i))
        sched.remove_queued(lambda item: item.startswith("crit"))
    live = sched.session_count
    assert sum(len(heap) for heap in sched._heaps) <= 2 * live + 64 + 4


# --- starvation -------------------------------------------------------------------------------


def test_low_item_is_served_under_a_flood_of_high_work() -> None:
    """With aging, a low item is popped within ~3 aging periods under a flood of high work."""
    aging = 1.0
    dt = 0.01
    sched = _scheduler(max_in_flight=1, aging=aging)
    backlog = 20  # high items always waiting: 20 * dt = 0.2 s of work ahead
    counter = 0
    for _ in range(backlog):
        sched.push(f"h{counter}", H, f"h{counter}", 0.0)
        counter += 1
    now = 0.0
    t0 = 1.0
    pushed_low = False
    served_at = None
    while now < t0 + 10 * aging:
        if not pushed_low and now >= t0:
            sched.push("low-session", L, "low", now)
            pushed_low = True
        sched.push(f"h{counter}", H, f"h{counter}", now)
        counter += 1
        key, item = sched.pop_ready(now)  # type: ignore[misc]
        sched.complete(key, now)
        if item == "low":
            served_at = now
            break
        now += dt
    assert served_at is not None
    assert served_at <= t0 + 3 * aging


def test_critical_work_is_never_overtaken_by_aged_work() -> None:
    """Under a flood of critical work, aged lanes wait: critical is strict."""
    sched = _scheduler(max_in_flight=1, aging=1.0)
    sched.push("low", L, "low", 0.0)
    for i in range(50):
        sched.push(f"c{i}", C, f"c{i}", 0.0)
    assert _drain(sched, 100.0)[-1] == "low"


def test_without_aging_low_priority_waits_for_all_critical() -> None:
    """With a huge aging period, strict priority holds: low waits while critical is ready."""
    sched = _scheduler(max_in_flight=1)
    sched.push("low", L, "low", 0.0)
    for i in range(50):
        sched.push(f"c{i}", C, f"c{i}", float(i))
    assert _drain(sched, 100.0)[-1] == "low"


# --- model-based property test ----------------------------------------------------------------


class _ModelLane:
    def __init__(self) -> None:
        self.items: deque[tuple[Priority, str, float, int]] = deque()  # prio, item, at, seq
        self.in_flight = False
        self.ready_since = 0.0
        self.ready_seq = 0


class SchedulerMachine(RuleBasedStateMachine):
    """Compares the scheduler with a scan-everything reference model."""

    def __init__(self) -> None:
        super().__init__()
        self.aging = 1.0
        self.sched: PriorityScheduler[str] = PriorityScheduler(
            max_in_flight=3, aging_seconds=self.aging
        )
        self.now = 0.0
        self.max_in_flight = 3
        self.lanes: dict[str, _ModelLane] = {}
        self.next_item: dict[str, int] = {}
        self.last_popped: dict[str, int] = {}
        self.ready_counter = 0

    def _tick(self) -> int:
        self.ready_counter += 1
        return self.ready_counter

    def _make_ready(self, lane: _ModelLane) -> None:
        lane.ready_since = self.now
        lane.ready_seq = self._tick()

    def _expected(self) -> Hashable | None:
        in_flight = sum(lane.in_flight for lane in self.lanes.values())
        if in_flight >= self.max_in_flight:
            return None
        best = None
        for key, lane in self.lanes.items():
            if lane.in_flight or not lane.items:
                continue
            level = min(prio.rank for prio, *_ in lane.items)
            waited = max(0.0, self.now - lane.ready_since)
            effective = level if level == 0 else max(1, level - int(waited // self.aging))
            candidate = (effective, lane.ready_since, lane.ready_seq, key)
            if best is None or candidate[:3] < best[:3]:
                best = candidate
        return None if best is None else best[3]

    @rule(
        key=st.sampled_from(["a", "b", "c", "d", "e"]),
        prio=st.sampled_from(list(Priority)),
    )
    def push(self, key: str, prio: Priority) -> None:
        n = self.next_item.get(key, 0)
        self.next_item[key] = n + 1
        item = f"{key}:{n}"
        self.sched.push(key, prio, item, self.now)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = _ModelLane()
        seq = self._tick()
        if not lane.in_flight and not lane.items:
            self._make_ready(lane)
        lane.items.append((prio, item, self.now, seq))

    @rule()
    def pop(self) -> None:
        expected = self._expected()
        popped = self.sched.pop_ready(self.now)
        if expected is None:
            assert popped is None
            return
        assert popped is not None
        assert popped[0] == expected
        key, item = str(popped[0]), popped[1]
        lane = self.lanes[key]
        assert not lane.in_flight, "two in flight for one session"
        _, model_item, _, _ = lane.items.popleft()
        assert item == model_item, "per-session order broken"
        n = int(item.split(":")[1])
        assert n > self.last_popped.get(key, -1)
        self.last_popped[key] = n
        lane.in_flight = True
        assert self.sched.in_flight <= self.max_in_flight

    @rule(
        key=st.sampled_from(["a", "b", "c", "d", "e"]),
        prio=st.sampled_from(list(Priority)),
    )
    def start_now(self, key: str, prio: Priority) -> None:
        """``start_now`` starts an item exactly when pushing it and popping would return it;
        otherwise the item is pushed, as the engine does."""
        nothing_ready = self._expected() is None
        in_flight = sum(lane.in_flight for lane in self.lanes.values())
        would_run_it = nothing_ready and in_flight < self.max_in_flight and key not in self.lanes
        started = self.sched.start_now(key)
        assert started == would_run_it
        if not started:
            self.push(key, prio)
            return
        n = self.next_item.get(key, 0)
        self.next_item[key] = n + 1
        self.last_popped[key] = n
        lane = self.lanes[key] = _ModelLane()
        lane.in_flight = True
        self._tick()

    @precondition(lambda self: any(lane.in_flight for lane in self.lanes.values()))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(k for k, ln in self.lanes.items() if ln.in_flight)))
        self.sched.complete(key, self.now)
        lane = self.lanes[key]
        lane.in_flight = False
        critical = [(at, seq) for prio, _, at, seq in lane.items if prio is Priority.CRITICAL]
        if critical:  # a lane holding a critical item keeps its place
            lane.ready_since, lane.ready_seq = critical[0]
        elif lane.items:
            self._make_ready(lane)
        else:
            del self.lanes[key]

    @rule(dt=st.sampled_from([0.0, 0.3, 1.0, 2.5]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(limit=st.integers(min_value=1, max_value=4))
    def set_max_in_flight(self, limit: int) -> None:
        self.sched.max_in_flight = limit
        self.max_in_flight = limit

    @rule(key=st.sampled_from(["a", "b", "c", "d", "e"]))
    def remove_session_items(self, key: str) -> None:
        removed = self.sched.remove_queued(lambda item: item.startswith(f"{key}:"))
        lane = self.lanes.get(key)
        expected = [] if lane is None else [item for _, item, *_ in lane.items]
        assert removed == expected
        if lane is not None:
            lane.items.clear()
            if not lane.in_flight:
                del self.lanes[key]

    @invariant()
    def counters_match(self) -> None:
        in_flight = sum(lane.in_flight for lane in self.lanes.values())
        assert self.sched.in_flight == in_flight
        assert self.sched.queued == sum(len(lane.items) for lane in self.lanes.values())
        assert self.sched.session_count == len(self.lanes)
        depth = {prio: 0 for prio in Priority}
        for lane in self.lanes.values():
            for prio, *_ in lane.items:
                depth[prio] += 1
        assert self.sched.depth_by_priority() == depth
        for key in "abcde":
            assert self.sched.is_idle(key) == (key not in self.lanes)


SchedulerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
TestSchedulerModel = SchedulerMachine.TestCase


@given(
    pushes=st.lists(
        st.tuples(st.sampled_from("abcdef"), st.sampled_from(list(Priority))),
        min_size=1,
        max_size=60,
    ),
    max_in_flight=st.integers(1, 4),
)
@settings(deadline=None)
def test_strict_priority_among_ready_lanes_without_aging(
    pushes: list[tuple[str, Priority]], max_in_flight: int
) -> None:
    """With no aging, every pop takes a lane whose inherited level is the best among ready lanes."""
    sched = PriorityScheduler[str](max_in_flight=max_in_flight, aging_seconds=NO_AGING)
    queued: dict[str, deque[Priority]] = {}
    for i, (key, prio) in enumerate(pushes):
        sched.push(key, prio, f"{key}{i}", float(i))
        queued.setdefault(key, deque()).append(prio)
    running: deque[str] = deque()
    while True:
        popped = sched.pop_ready(1e6)
        if popped is None:
            if not running:
                break
            sched.complete(running.popleft(), 1e6)
            continue
        key = str(popped[0])
        ready_levels = [
            min(p.rank for p in prios)
            for k, prios in queued.items()
            if prios and k not in running
        ]
        assert min(p.rank for p in queued[key]) == min(ready_levels)
        queued[key].popleft()
        running.append(key)
    assert sched.queued == 0
    assert sched.in_flight == 0

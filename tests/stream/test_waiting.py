from __future__ import annotations

from collections.abc import Callable, Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import Priority
from stream.engine.waiting import WaitingLine

C, H, N, L = Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW


def _drain(line: WaitingLine[str]) -> list[tuple[Hashable, list[str]]]:
    out: list[tuple[Hashable, list[str]]] = []
    while (popped := line.pop_session()) is not None:
        out.append(popped)
    return out


# --- ordering ---------------------------------------------------------------------------------


def test_empty_line_has_nothing_to_pop() -> None:
    line: WaitingLine[str] = WaitingLine()
    assert line.pop_session() is None
    assert line.peek_session() is None
    assert len(line) == 0
    assert not line


def test_critical_session_is_popped_before_earlier_normal_ones() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", N, "b1")
    line.push("c", C, "c1")
    assert [key for key, _ in _drain(line)] == ["c", "a", "b"]


def test_levels_are_served_most_urgent_first() -> None:
    line: WaitingLine[str] = WaitingLine()
    for key, prio in [("low", L), ("normal", N), ("high", H), ("critical", C)]:
        line.push(key, prio, key)
    assert [key for key, _ in _drain(line)] == ["critical", "high", "normal", "low"]


def test_session_items_come_out_in_arrival_order_even_if_a_later_one_is_more_urgent() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", L, "a1")
    line.push("a", N, "a2")
    line.push("a", C, "a3")
    line.push("a", H, "a4")
    assert line.pop_session() == ("a", ["a1", "a2", "a3", "a4"])


def test_later_critical_push_raises_a_waiting_session() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", N, "b1")
    line.push("c", H, "c1")
    line.push("b", C, "b2")  # b inherits critical: ahead of c (high) and a (earlier, normal)
    assert _drain(line) == [("b", ["b1", "b2"]), ("c", ["c1"]), ("a", ["a1"])]


def test_less_urgent_push_does_not_lower_a_session() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", H, "a1")
    line.push("b", N, "b1")
    line.push("a", L, "a2")
    assert [key for key, _ in _drain(line)] == ["a", "b"]


def test_ties_go_to_the_session_that_arrived_first() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", L, "b1")
    line.push("c", N, "c1")
    line.push("b", N, "b2")  # b now ties a and c at normal; its first arrival is before c's
    assert [key for key, _ in _drain(line)] == ["a", "b", "c"]


def test_keys_need_not_be_orderable() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push(("bot", 1), N, "x")
    line.push(frozenset({"y"}), N, "y")
    line.push(None, N, "z")
    assert [items for _, items in _drain(line)] == [["x"], ["y"], ["z"]]


def test_peek_equals_next_pop_and_removes_nothing() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", L, "b1")
    line.push("b", C, "b2")
    line.push("c", H, "c1")
    while line:
        peeked = line.peek_session()
        assert line.peek_session() == peeked  # peeking twice changes nothing
        before = len(line)
        popped = line.pop_session()
        assert popped is not None
        assert popped[0] == peeked
        assert len(line) == before - len(popped[1])


def test_a_popped_session_that_comes_back_queues_as_new() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", C, "a1")
    line.push("b", N, "b1")
    assert line.pop_session() == ("a", ["a1"])
    line.push("a", N, "a2")  # arrives after b: behind it at the same rank
    assert _drain(line) == [("b", ["b1"]), ("a", ["a2"])]


# --- remove -----------------------------------------------------------------------------------


def test_remove_returns_matches_in_arrival_order_and_drops_empty_sessions() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1-x")
    line.push("b", C, "b1-x")
    line.push("a", N, "a2")
    line.push("c", H, "c1-x")
    assert line.remove(lambda item: item.endswith("-x")) == ["a1-x", "b1-x", "c1-x"]
    assert len(line) == 1
    assert line.sessions == 1
    assert "b" not in line and "c" not in line
    assert line.peek_session() == "a"
    assert _drain(line) == [("a", ["a2"])]


def test_remove_nothing_matching_changes_nothing() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", C, "b1")
    assert line.remove(lambda _: False) == []
    assert _drain(line) == [("b", ["b1"]), ("a", ["a1"])]


def test_remove_lowers_a_session_that_lost_its_urgent_item() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", L, "b1")
    line.push("b", C, "b2")
    assert line.remove(lambda item: item == "b2") == ["b2"]
    assert line.depth_by_priority() == {C: 0, H: 0, N: 1, L: 1}
    assert _drain(line) == [("a", ["a1"]), ("b", ["b1"])]


def test_remove_moves_a_session_behind_when_its_first_item_goes() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", N, "b1")
    line.push("a", N, "a2")
    line.remove(lambda item: item == "a1")  # a's earliest waiting item is now after b's
    assert _drain(line) == [("b", ["b1"]), ("a", ["a2"])]


def test_remove_everything_empties_the_line() -> None:
    line: WaitingLine[str] = WaitingLine()
    for i, prio in enumerate([C, H, N, L, C]):
        line.push(f"s{i % 3}", prio, f"i{i}")
    assert line.remove(lambda _: True) == ["i0", "i1", "i2", "i3", "i4"]
    assert not line
    assert len(line) == 0 and line.sessions == 0
    assert line.peek_session() is None and line.pop_session() is None
    assert line.depth_by_priority() == dict.fromkeys(Priority, 0)


def test_remove_with_a_raising_predicate_changes_nothing() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", C, "b1")
    line.push("a", H, "boom")

    def predicate(item: str) -> bool:
        if item == "boom":
            raise RuntimeError(item)
        return True

    with pytest.raises(RuntimeError):
        line.remove(predicate)
    assert len(line) == 3
    assert _drain(line) == [("b", ["b1"]), ("a", ["a1", "boom"])]


# --- introspection ----------------------------------------------------------------------------


def test_introspection_counts() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("a", C, "a2")
    line.push("b", L, "b1")
    assert len(line) == 3
    assert bool(line)
    assert line.sessions == 2
    assert "a" in line and "b" in line and "c" not in line
    assert sorted(line.items()) == ["a1", "a2", "b1"]
    # By each item's own priority, not the critical level a1 inherits from a2.
    assert line.depth_by_priority() == {C: 1, H: 0, N: 1, L: 1}
    line.pop_session()
    assert len(line) == 1
    assert line.sessions == 1
    assert "a" not in line
    assert list(line.items()) == ["b1"]
    assert line.depth_by_priority() == {C: 0, H: 0, N: 0, L: 1}


def test_items_is_a_snapshot() -> None:
    line: WaitingLine[str] = WaitingLine()
    line.push("a", N, "a1")
    line.push("b", N, "b1")
    seen = []
    for item in line.items():
        seen.append(item)
        line.pop_session()  # mutating while iterating must not break the iteration
    assert sorted(seen) == ["a1", "b1"]


def test_heap_stays_bounded_under_repeated_inheritance() -> None:
    """Stale entries of popped sessions do not pile up when urgent sessions keep coming."""
    line: WaitingLine[int] = WaitingLine()
    for i in range(2000):
        line.push(i, L, i)
        line.push(i, C, i)  # leaves the low entry stale; the session is popped at critical
        assert line.pop_session() == (i, [i, i])
    assert len(line._heap) <= 64 + 2 * line.sessions


# --- property test against a reference model --------------------------------------------------

KEYS = ["a", "b", "c", "d", "e"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(KEYS), st.sampled_from(list(Priority))),
        st.tuples(st.just("pop"), st.just(""), st.just(C)),
        st.tuples(st.just("peek"), st.just(""), st.just(C)),
        # remove items whose id is divisible by a small modulus, or one session's items
        st.tuples(st.just("remove_mod"), st.sampled_from(["2", "3", "5"]), st.just(C)),
        st.tuples(st.just("remove_key"), st.sampled_from(KEYS), st.just(C)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_matches_a_reference_model(ops: list[tuple[str, str, Priority]]) -> None:
    line: WaitingLine[tuple[str, int]] = WaitingLine()
    model: list[tuple[int, str, Priority, tuple[str, int]]] = []  # (seq, key, priority, item)
    pushed: list[tuple[str, int]] = []
    out: list[tuple[str, int]] = []  # every item that left, by pop or remove, in leaving order
    popped_out: list[tuple[str, int]] = []  # the items that left by pop, in leaving order

    def expected_next() -> str | None:
        best: dict[str, tuple[int, int]] = {}  # key -> (best rank, first seq)
        for seq, key, prio, _ in model:
            rank, first = best.get(key, (len(Priority), seq))
            best[key] = (min(rank, prio.rank), min(first, seq))
        return min(best, key=best.__getitem__) if best else None

    def best_ranks() -> dict[str, int]:
        ranks: dict[str, int] = {}
        for _, key, prio, _ in model:
            ranks[key] = min(ranks.get(key, len(Priority)), prio.rank)
        return ranks

    def pop_and_check() -> bool:
        nonlocal model
        want, ranks = expected_next(), best_ranks()
        popped = line.pop_session()
        if want is None:
            assert popped is None
            return False
        assert popped is not None
        key, items = popped
        assert ranks[str(key)] == min(ranks.values())  # the most urgent session goes first...
        assert key == want  # ...and among equals the one waiting longest
        assert items == [entry[3] for entry in model if entry[1] == key]  # arrival order
        model = [entry for entry in model if entry[1] != key]
        out.extend(items)
        popped_out.extend(items)
        return True

    for seq, (op, arg, prio) in enumerate(ops):
        if op == "push":
            item = (arg, seq)
            line.push(arg, prio, item)
            model.append((seq, arg, prio, item))
            pushed.append(item)
        elif op == "peek":
            assert line.peek_session() == expected_next()
        elif op == "pop":
            pop_and_check()
        else:
            predicate = _by_id_modulus(int(arg)) if op == "remove_mod" else _by_key(arg)
            removed = line.remove(predicate)
            assert removed == [entry[3] for entry in model if predicate(entry[3])]
            model = [entry for entry in model if not predicate(entry[3])]
            out.extend(removed)

        assert len(line) == len(model)
        assert line.sessions == len({entry[1] for entry in model})
        assert bool(line) == bool(model)
        for key in KEYS:
            assert (key in line) == any(entry[1] == key for entry in model)
        assert line.depth_by_priority() == {p: sum(e[2] is p for e in model) for p in Priority}
        assert sorted(line.items()) == sorted(entry[3] for entry in model)

    while pop_and_check():  # what was left at the end, drained under the same checks
        pass
    assert not model and len(line) == 0
    # every pushed item came out exactly once
    assert sorted(out) == sorted(pushed)
    assert len(out) == len(set(out))
    # each session's popped items left in arrival order, across pops too (remove takes any)
    for key in KEYS:
        seqs = [seq for k, seq in popped_out if k == key]
        assert seqs == sorted(seqs)


def _by_id_modulus(modulus: int) -> Callable[[tuple[str, int]], bool]:
    return lambda item: item[1] % modulus == 0


def _by_key(key: str) -> Callable[[tuple[str, int]], bool]:
    return lambda item: item[0] == key

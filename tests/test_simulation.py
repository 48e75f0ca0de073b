"""The send-once promises under a deterministic simulation of every port, fault and interleaving.

``tests/simulation.py`` builds the world; here hypothesis drives it (a failing schedule shrinks to
a minimal one and is printed with its trace), and a fixed range of seeds runs as ``./scripts/simulate``
does. CI runs both; ``./scripts/simulate --schedules N`` runs as many as asked.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.simulation import Chooser, World, simulate

SEEDED = 400  # seeded schedules per CI run (about 13 s)
EXPLORED = 150  # schedules hypothesis chooses per CI run


def _explain(world: World) -> str:
    return "\n".join([*world.violations(), "trace (last 80 lines):", *world.trace[-80:]])


@pytest.mark.parametrize("block", range(4))
def test_every_seeded_schedule_keeps_the_send_once_promises(block: int) -> None:
    for seed in range(block * SEEDED // 4, (block + 1) * SEEDED // 4):
        world = simulate(Chooser.seeded(seed))
        assert world.violations() == [], f"seed {seed} (./scripts/simulate --replay {seed}):\n{_explain(world)}"


@settings(
    max_examples=EXPLORED,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.integers(0, 255), max_size=3000))
def test_every_schedule_hypothesis_chooses_keeps_the_send_once_promises(tape: list[int]) -> None:
    # The actors run in threads of their own, where hypothesis cannot draw: the choices are drawn
    # up front, as a tape the schedule reads (and hypothesis shrinks).
    world = simulate(Chooser.from_tape(tape))

    assert world.violations() == [], _explain(world)


def test_the_simulation_injects_faults_and_crashes_and_interleaves_instances() -> None:
    worlds = [simulate(Chooser.seeded(seed)) for seed in range(60)]
    trace = "\n".join(line for world in worlds for line in world.trace)

    for kind in ("refused", "applied, answer lost", "hung", "slow", "instance paused", "CRASH"):
        assert kind in trace, kind
    assert {world.mode.value for world in worlds} == {"standard", "verified"}
    assert any(len({line.split()[1] for line in w.trace if "graph." in line}) > 1 for w in worlds)


def test_the_same_seed_replays_the_same_schedule() -> None:
    first, again = simulate(Chooser.seeded(7)), simulate(Chooser.seeded(7))

    assert first.trace == again.trace

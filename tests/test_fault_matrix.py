"""Every simulator fault, several times, with random cut points: no accepted generation is lost
and none is paid twice. Prints the matrix so a CI log shows what was exercised."""

from __future__ import annotations

import random

import pytest
from kki_testing import TEST_KEY

from kki_widgets import RelayClient
from kki_widgets.protocol.errors import RateLimitError, RelayServerError, StreamInterrupted
from kki_widgets.simulator import Simulator

RUNS = 3


def scenarios(rng: random.Random):
    yield "cut_after_task_id", "[[fault:cut_after_task_id]]", {}
    yield "cut_mid_progress", "[[fault:cut_mid_progress]]", {}
    for _ in range(3):
        cut = rng.randint(1, 40)
        yield f"cut_after:{cut}", f"[[fault:cut_after:{cut}]]", {}
    yield "stall", "[[fault:stall:1]]", {"timeout": 0.4}
    yield "error_chunk", "[[fault:error_chunk]]", {}
    yield "malformed", "[[fault:malformed]]", {}
    yield "split+crlf+keepalive", "[[fault:split,crlf,keepalive]]", {}
    yield "pretty_raw", "[[fault:pretty_raw]]", {}
    yield "fail", "[[fault:fail]]", {}
    yield "policy", "[[fault:policy]]", {}
    yield "429", "[[fault:status:429]]", {"max_retries": 1}
    yield "503", "[[fault:status:503]]", {"max_retries": 1}


@pytest.mark.parametrize("run", range(RUNS))
def test_fault_matrix(capsys, clip_cache, run):
    # A run each, so the runs share the workers; each has its own cut points.
    rng = random.Random(20261126 + run)
    matrix: dict[str, dict[str, int]] = {}
    # Its prompts' clips are rendered once per machine (conftest's clip cache), not per run.
    with Simulator(queue_seconds=0, generate_seconds=0.1, step_seconds=0.01, seed=11,
                   media_dir=clip_cache) as sim:  # fmt: skip
        for name, marker, options in scenarios(rng):
            client = RelayClient(
                base_url=sim.base_url, api_key=TEST_KEY, poll_interval=0.05, **options
            )
            before = sim.submissions
            seen_task = None
            outcome = "?"
            try:
                for generation in client.stream(f"clip {run} {name} {marker}"):
                    seen_task = generation.task_id or seen_task
                outcome = generation.status
                if outcome == "completed":
                    assert generation.video_url and generation.sid, name
                else:
                    assert outcome == "failed" and generation.error, name
            except StreamInterrupted as error:
                # Only a cut before the task ID may end without a result.
                assert error.task_id is None and seen_task is None, name
                outcome = "cut before ID"
            except (RateLimitError, RelayServerError):
                assert sim.submissions == before, name  # refused before submission
                outcome = "refused"
            submitted = sim.submissions - before
            assert submitted <= 1, f"{name}: the prompt was submitted {submitted} times"
            if seen_task:
                assert outcome in ("completed", "failed"), f"{name}: accepted task lost"
            row = matrix.setdefault(name.split(":")[0], {})
            row[outcome] = row.get(outcome, 0) + 1
        prompts = sum(sum(row.values()) for row in matrix.values())
        refused = sum(row.get("refused", 0) for row in matrix.values())
        assert sim.submissions == prompts - refused
    with capsys.disabled():
        print(f"\nfault matrix, run {run + 1} of {RUNS} (outcome counts):")
        for name, row in sorted(matrix.items()):
            cells = ", ".join(f"{k}={v}" for k, v in sorted(row.items()))
            print(f"  {name:<22} {cells}")
    assert matrix["cut_after_task_id"] == {"completed": 1}
    assert matrix["fail"] == {"failed": 1}


@pytest.mark.parametrize("transient", [1, 2])
def test_transient_outage_before_the_answer_is_retried(transient):
    with Simulator(
        queue_seconds=0, generate_seconds=0, step_seconds=0, faults=[f"fail_first:{transient}"]
    ) as sim:
        client = RelayClient(base_url=sim.base_url, api_key=TEST_KEY, max_retries=3)
        assert client.generate("an outage, then a video").status == "completed"
        assert sim.submissions == 1 and len(sim.requests) == transient + 1

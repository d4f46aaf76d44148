"""Dynamic batching: concurrent requests share model runs and each caller gets exactly its own rows."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from modelops_inference.batching import Batcher, Runner
from modelops_inference.errors import InferenceFailed, ModelNotReady


class Recorder:
    """A stand-in model that doubles its input and records every run's row count."""

    def __init__(self):
        self.runs: list[int] = []

    def __call__(self, inputs):
        x = inputs["x"]
        if (x < 0).any():
            raise RuntimeError("negative input")
        self.runs.append(x.shape[0])
        return {"y": x * 2, "first": x[:, :1]}


def observed():
    seen = []
    return seen, lambda rows, requests, seconds: seen.append((rows, requests))


async def submit_all(runner, arrays):
    return await asyncio.gather(*(runner.submit({"x": a}) for a in arrays), return_exceptions=True)


def run_batcher(arrays, max_batch_size=64, delay=0.05, model=None):
    model = model or Recorder()
    seen, observe = observed()

    async def main():
        batcher = Batcher(model, max_batch_size, delay, observe)
        await batcher.start()
        batcher.arriving = len(arrays)  # as if every request were still being read
        try:
            return await submit_all(batcher, arrays)
        finally:
            await batcher.stop()

    return asyncio.run(main()), model, seen


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows():
    arrays = [np.full((i % 3 + 1, 2), i, dtype=np.float32) for i in range(40)]
    results, model, seen = run_batcher(arrays)
    for array, result in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(result["y"], array * 2)
        np.testing.assert_array_equal(result["first"], array[:, :1])
    assert sum(model.runs) == sum(a.shape[0] for a in arrays)
    assert len(model.runs) < len(arrays)
    assert sum(requests for _, requests in seen) == len(arrays)


def test_no_run_exceeds_the_max_batch_size():
    arrays = [np.ones((3, 2), np.float32) for _ in range(20)]
    _, model, _ = run_batcher(arrays, max_batch_size=7)
    assert max(model.runs) <= 7


def test_a_request_larger_than_the_max_batch_size_runs_alone():
    _, model, _ = run_batcher([np.ones((10, 2), np.float32)], max_batch_size=4)
    assert model.runs == [10]


def test_requests_of_different_trailing_shapes_are_not_merged():
    arrays = [np.ones((1, 2), np.float32), np.ones((1, 3), np.float32), np.ones((1, 2), np.float32)]
    results, model, _ = run_batcher(arrays)
    assert [r["y"].shape for r in results] == [(1, 2), (1, 3), (1, 2)]
    assert sum(model.runs) == 3


def test_a_failing_request_fails_alone_and_its_neighbours_succeed():
    arrays = [np.ones((1, 2), np.float32) for _ in range(5)]
    arrays[2] = -arrays[2]
    results, _, _ = run_batcher(arrays)
    assert isinstance(results[2], InferenceFailed) and "negative input" in str(results[2])
    assert all(isinstance(r, dict) for i, r in enumerate(results) if i != 2)


def test_a_lone_request_does_not_wait_for_company_when_none_is_arriving():
    async def main():
        batcher = Batcher(Recorder(), 64, 30.0)  # a 30 s delay would time the test out
        await batcher.start()
        try:
            return await asyncio.wait_for(batcher.submit({"x": np.ones((1, 2), np.float32)}), 10)
        finally:
            await batcher.stop()

    assert asyncio.run(main())["y"].tolist() == [[2, 2]]


def test_submitting_after_stop_is_not_ready():
    async def main():
        batcher = Batcher(Recorder(), 4, 0.01)
        await batcher.start()
        await batcher.stop()
        await batcher.submit({"x": np.ones((1, 2), np.float32)})

    with pytest.raises(ModelNotReady):
        asyncio.run(main())


def test_runner_without_batching_runs_each_request_on_its_own():
    model = Recorder()
    seen, observe = observed()

    async def main():
        runner = Runner(model, observe, threads=2)
        try:
            return await submit_all(runner, [np.full((2, 2), i, np.float32) for i in range(6)])
        finally:
            await runner.stop()

    results = asyncio.run(main())
    assert [r["y"][0, 0] for r in results] == [0, 2, 4, 6, 8, 10]
    assert model.runs == [2] * 6 and seen == [(2, 1)] * 6


def _thread_names(inline_below_s: float, batching: bool) -> list[str]:
    import threading

    names = []

    def model(inputs):
        names.append(threading.current_thread().name)
        return {"y": inputs["x"]}

    async def main():
        runner = Batcher(model, 8, 0.0, inline_below_s=inline_below_s) if batching else Runner(
            model, inline_below_s=inline_below_s)
        await runner.start()
        try:
            for _ in range(3):
                await runner.submit({"x": np.ones((1, 2), np.float32)})
        finally:
            await runner.stop()

    asyncio.run(main())
    return names


@pytest.mark.parametrize("batching", [True, False])
def test_runs_shorter_than_a_thread_hand_off_move_to_the_event_loop_after_the_first(batching):
    first, *rest = _thread_names(inline_below_s=60.0, batching=batching)
    assert first.startswith("model-run")
    assert rest == ["MainThread", "MainThread"]


@pytest.mark.parametrize("batching", [True, False])
def test_with_inlining_off_every_run_uses_the_model_thread(batching):
    assert all(n.startswith("model-run") for n in _thread_names(inline_below_s=0.0, batching=batching))


def test_outputs_not_aligned_with_input_rows_are_never_split_across_callers():
    def summing(inputs):
        return {"total": inputs["x"].sum(axis=0, keepdims=True)}  # one row, whatever the batch

    arrays = [np.full((1, 2), i, np.float32) for i in range(6)]
    results, _, _ = run_batcher(arrays, model=summing)
    assert [r["total"].tolist() for r in results] == [[[i, i]] for i in range(6)]


def test_the_worker_survives_a_batch_that_breaks_and_keeps_serving():
    calls = []

    def flaky(inputs):
        calls.append(1)
        if len(calls) == 1:
            return None  # not a dict of arrays: the batch fails in the worker, not in the model
        return {"y": inputs["x"]}

    async def main():
        batcher = Batcher(flaky, 8, 0.0)
        await batcher.start()
        try:
            first = await asyncio.gather(batcher.submit({"x": np.ones((1, 2), np.float32)}),
                                         return_exceptions=True)
            second = await batcher.submit({"x": np.ones((1, 2), np.float32)})
            return first[0], second
        finally:
            await batcher.stop()

    first, second = asyncio.run(main())
    assert isinstance(first, Exception)
    assert second["y"].tolist() == [[1, 1]]


def test_each_run_hands_its_answered_rows_and_their_inputs_to_the_counters_once():
    arrays = [np.full((i % 3 + 1, 2), i, dtype=np.float32) for i in range(12)]
    arrays[4] = -arrays[4]  # fails alone: its rows are never answered
    answered, asked = [], []

    def hand(inputs, outputs):
        answered.append(outputs["y"])
        asked.append(inputs["x"])

    async def main():
        batcher = Batcher(Recorder(), 64, 0.05, answered=hand)
        await batcher.start()
        batcher.arriving = len(arrays)
        try:
            return await submit_all(batcher, arrays)
        finally:
            await batcher.stop()

    asyncio.run(main())
    counted = np.concatenate(answered)[:, 0] / 2
    assert sorted(counted.tolist()) == sorted(float(i) for i, a in enumerate(arrays) for _ in a if i != 4)
    assert len(answered) < len(arrays)  # per run, not per request
    np.testing.assert_array_equal(np.concatenate(asked) * 2, np.concatenate(answered))


def test_rows_and_inputs_of_a_caller_that_went_away_during_the_run_are_not_counted():
    import threading

    started, release = threading.Event(), threading.Event()

    def slow(inputs):
        started.set()
        release.wait(10)
        return {"y": inputs["x"]}

    answered = []

    async def main():
        batcher = Batcher(slow, 64, 0.05, answered=lambda inputs, outputs: answered.append((inputs["x"], outputs["y"])))
        await batcher.start()
        batcher.arriving = 3
        tasks = [asyncio.create_task(batcher.submit({"x": np.full((2, 1), i, np.float32)})) for i in range(3)]
        await asyncio.sleep(0)
        batcher.arriving = 0
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        tasks[1].cancel()  # e.g. a gRPC deadline passed
        release.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.stop()

    asyncio.run(main())
    [(inputs, rows)] = answered
    assert rows[:, 0].tolist() == inputs[:, 0].tolist() == [0, 0, 2, 2]


def test_the_runner_without_batching_counts_every_answered_run():
    answered = []

    async def main():
        runner = Runner(Recorder(), answered=lambda inputs, outputs: answered.append(outputs["y"].shape[0]))
        try:
            return await submit_all(runner, [np.ones((n, 2), np.float32) for n in (1, 2, 3)] + [-np.ones((1, 2))])
        finally:
            await runner.stop()

    asyncio.run(main())
    assert answered == [1, 2, 3]


def test_run_costs_are_learnt_per_bucket_of_rows_so_a_fixed_cost_model_and_a_per_row_one_both_predict():
    from modelops_inference.batching import RunCosts

    mlp, cnn = RunCosts(), RunCosts()
    assert mlp.expected(1) is None  # nothing seen: the first run goes to the model thread
    for rows, mlp_seconds in ((1, 5.5e-6), (16, 6.7e-6)):  # measured: nearly all fixed cost
        mlp.observe(rows, mlp_seconds)
        cnn.observe(rows, 7e-6 + 4e-6 * rows)  # nearly all per row
    assert mlp.expected(16) == pytest.approx(6.7e-6) and mlp.expected(20) == pytest.approx(6.7e-6)
    assert cnn.expected(16) == pytest.approx(71e-6) and cnn.expected(1) == pytest.approx(11e-6)
    assert cnn.expected(4) == pytest.approx(71e-6)  # unseen: bounded by the next larger bucket seen
    assert cnn.expected(64) is None  # nothing larger seen: unknown
    cnn.observe(16, 171e-6)
    assert cnn.expected(16) == pytest.approx(0.8 * 71e-6 + 0.2 * 171e-6)  # a moving average

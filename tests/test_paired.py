"""Paired comparisons (yopo.results.paired), against cases worked out by hand and against the
normal approximation of a mean difference."""
import json
import math

import numpy as np
import pytest

from yopo import paper, results
from yopo.results.paired import paired_interval, paired_table
from tiny_runs import eval_record


def test_a_constant_difference_has_a_point_interval():
    assert paired_interval([np.array([1.0, 1.0, 1.0])]) == (1.0, 1.0, 1.0)


def test_two_examples_by_hand():
    # differences 0 and 1: a resample of two has mean 0 (1/4), 0.5 (1/2) or 1 (1/4), so the
    # 2.5 % and 97.5 % points of the bootstrap distribution are 0 and 1
    assert paired_interval([np.array([0.0, 1.0])]) == (0.5, 0.0, 1.0)


def test_the_average_resamples_each_task_on_its_own():
    # task A: differences 0, 1 (resampled means 0, 0.5, 1 with 1/4, 1/2, 1/4); task B: all 0.
    # The average of the two task means is half of A's: 0, 0.25, 0.5 -> interval (0, 0.5)
    assert paired_interval([np.array([0.0, 1.0]), np.zeros(3)]) == (0.25, 0.0, 0.5)


def test_a_large_sample_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    diff = rng.choice([-1.0, 0.0, 1.0], size=4000, p=[0.2, 0.5, 0.3])
    mean, low, high = paired_interval([diff])
    half_width = 1.96 * diff.std(ddof=1) / math.sqrt(diff.size)
    assert mean == pytest.approx(diff.mean())
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert (low + high) / 2 == pytest.approx(diff.mean(), abs=0.1 * half_width)


def _write_run(folder, record, pruned, dense):
    """A run folder with its record and per-example scores: {task: [0/1 per example]}."""
    def section(scores):
        return {t: {"metric": paper.TASK_METRICS[t], "doc_id": list(range(len(v))),
                    "value": [float(x) for x in v], "docs_sha256": f"{t}-docs"}
                for t, v in scores.items()}

    folder.mkdir(parents=True)
    (folder / results.METRICS_FILE).write_text(json.dumps(record))
    (folder / "example_scores.json").write_text(json.dumps(
        {"pruned": section(pruned), "dense": section(dense), "before_rft": None}))


def test_paired_table_by_hand(tmp_path):
    # four examples per task; every task the same pattern, so the average equals each task
    dense = {t: [1, 1, 1, 0] for t in paper.TASKS}
    method = {t: [1, 1, 0, 0] for t in paper.TASKS}
    # random over two seeds: per example (1+0)/2, (0+0)/2, (1+1)/2, (0+0)/2 = .5, 0, 1, 0
    seeds = [{t: [1, 0, 1, 0] for t in paper.TASKS}, {t: [0, 0, 1, 0] for t in paper.TASKS}]
    _write_run(tmp_path / "a", eval_record("activation", 0.2), method, dense)
    for seed, scores in enumerate(seeds):
        _write_run(tmp_path / f"r{seed}", eval_record("random", 0.2, seed=seed), scores, dense)
    runs = results.load_runs("local", runs_dir=tmp_path)

    against_random = paired_table(runs, "random").set_index("variant")
    # activation - random per example: 1-.5, 1-0, 0-1, 0-0 = .5, 1, -1, 0 -> mean .125
    assert against_random.loc["activation", "avg diff"] == pytest.approx(12.5)
    assert against_random.loc["activation", "piqa diff"] == pytest.approx(12.5)
    assert against_random.loc["activation", "n reference"] == 2
    low, high = against_random.loc["activation", ["avg low", "avg high"]]
    assert low < 0 < high and not against_random.loc["activation", "decisive"]

    against_dense = paired_table(runs, "dense").set_index("variant")
    # activation - dense: 0, 0, -1, 0 -> -25 points; random - dense: -.5, -1, 0, 0 -> -37.5
    assert against_dense.loc["activation", "avg diff"] == pytest.approx(-25.0)
    assert against_dense.loc["random", "avg diff"] == pytest.approx(-37.5)
    assert against_dense.loc["random", "n"] == 2


def test_runs_that_scored_other_examples_are_not_paired(tmp_path):
    dense = {t: [1, 0] for t in paper.TASKS}
    _write_run(tmp_path / "a", eval_record("activation", 0.2), dense, dense)
    _write_run(tmp_path / "b", eval_record("random", 0.2), {**dense, "piqa": [1, 0, 1]}, dense)
    runs = results.load_runs("local", runs_dir=tmp_path)
    with pytest.warns(UserWarning, match="not paired"):
        assert paired_table(runs, "random").empty

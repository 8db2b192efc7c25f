"""Published records (results/published/) and the README tables generated from them."""
import json

import pytest

from yopo import results
from yopo.results import published
from tiny_runs import eval_record


def test_the_readme_tables_are_the_published_records():
    """A README table edited by hand, or records replaced without regenerating, fail here:
    `python -m yopo.results.published readme` regenerates them."""
    text = published.README.read_text()
    assert published.MARKER.search(text), "the README has no published tables"
    assert published.render(text, published.published_runs()) == text


def test_every_published_record_is_complete_and_small():
    folders = list(results.run_folders(results.PUBLISHED_DIR))
    assert folders
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == sorted(published.RECORD_FILES)
        record = json.loads((folder / results.METRICS_FILE).read_text())
        assert record["git_commit"] and record["run_id"] in folder.name


def _write(folder, record, with_checkpoint=False):
    folder.mkdir(parents=True)
    (folder / results.METRICS_FILE).write_text(json.dumps(record))
    (folder / results.EXAMPLES_FILE).write_text(json.dumps({"pruned": None, "dense": None}))
    if with_checkpoint:
        (folder / "pruned_model").mkdir()
        (folder / "pruned_model" / "model.safetensors").write_bytes(b"0" * 100)


def test_collect_copies_records_not_checkpoints(tmp_path):
    _write(tmp_path / "runs" / "m" / "random" / "ratio0.2_seed0_abc",
           {**eval_record("random", 0.2), "run_id": "abc"}, with_checkpoint=True)
    written = published.collect(tmp_path / "runs", tmp_path / "published")
    assert [p.relative_to(tmp_path / "published").as_posix() for p in written] == [
        "m/random/ratio0.2_seed0_abc"]
    assert sorted(p.name for p in written[0].iterdir()) == sorted(published.RECORD_FILES)
    assert len(published.published_runs(tmp_path / "published")) == 1


def test_methods_table_by_hand(tmp_path):
    # activation at one ratio; random at two seeds (scales 0.8 and 0.6: mean avg 0.52 * 0.7)
    _write(tmp_path / "m" / "activation" / "a", {**eval_record("activation", 0.2),
                                                  "params_pruned": 2_000_000,
                                                  "calibration_source": "local"})
    for seed, (scale, ppl) in enumerate(((0.8, 150.0), (0.6, 250.0))):
        _write(tmp_path / "m" / "random" / f"r{seed}",
               {**eval_record("random", 0.2, seed=seed, scale=scale), "ppl_wikitext2": ppl,
                "params_pruned": 2_000_000})
    runs = published.published_runs(tmp_path)
    text = published.methods_markdown(runs, "m")
    assert "| `random` | weights only | 36.4 / 200 / 2.0 (2) |" in text  # 52 * 0.7; (150+250)/2
    assert "| `activation` | calibration text | 52.0 / 12.5 / 2.0 (1) |" in text
    assert text.index("`random`") < text.index("`activation`")  # weights only first
    assert "Dense: 60.0 / 10.0." in text  # eval_record's dense: avg 0.6, ppl 10
    assert "first 100 per task" in text
    with pytest.raises(published.PublishedError, match="no published records of model other"):
        published.methods_markdown(runs, "other")


def test_render_regenerates_only_between_markers_and_names_unknown_tables(tmp_path):
    runs = published.published_runs(tmp_path)  # none: an empty frame
    untouched = "# Title\n\nhand-written text stays\n"
    assert published.render(untouched, runs) == untouched
    with pytest.raises(published.PublishedError, match="'nonsense' is unknown"):
        published.render("<!-- published: nonsense m -->\nx\n<!-- /published -->", runs)


def test_check_fails_on_a_table_edited_by_hand(tmp_path, monkeypatch):
    records = tmp_path / "published"
    _write(records / "m" / "random" / "r0", {**eval_record("random", 0.2), "model": "m"})
    readme = tmp_path / "README.md"
    runs = published.published_runs(records)
    readme.write_text(published.render(
        "intro\n<!-- published: methods m -->\n<!-- /published -->\nend\n", runs))
    monkeypatch.setattr(published, "README", readme)
    monkeypatch.setattr(published, "PUBLISHED_DIR", records)
    monkeypatch.setattr(published, "published_runs", lambda: runs)
    assert published.main(["check"]) == 0
    readme.write_text(readme.read_text().replace("52.0 / 12.5", "53.0 / 12.5"))
    assert published.main(["check"]) == 1
    assert published.main(["readme"]) == 0 and published.main(["check"]) == 0


def test_notebooks_read_the_published_records_when_no_runs_are_given(tmp_path, monkeypatch):
    from yopo.results import report, sources

    records = tmp_path / "published"
    _write(records / "m" / "random" / "r0", eval_record("random", 0.2))
    monkeypatch.setattr(sources, "PUBLISHED_DIR", records)
    monkeypatch.setenv("YOPO_RUNS_DIR", str(tmp_path / "no_runs_here"))
    runs, *_, said = report.open_runs("local", None, "p", tmp_path / "t", tmp_path / "f")
    assert list(runs["method"]) == ["random"] and str(records) in said
    # runs of one's own come first
    _write(tmp_path / "no_runs_here" / "m" / "activation" / "a", eval_record("activation", 0.2))
    runs, *_, said = report.open_runs("local", None, "p", tmp_path / "t", tmp_path / "f")
    assert list(runs["method"]) == ["activation"] and str(records) not in said

"""The local lm-eval tasks read the real benchmark files into well-formed documents."""
import collections
import shutil

import pytest

import yopo.eval
from yopo.config import compose
from yopo.eval import dense_cache_path
from yopo.eval.zeroshot import LOCAL_PREFIX, TASKS_DIR, _task_manager
from yopo.paper import TASK_METRICS
from yopo.eval.tasks.local_data import split_hellaswag_context

# official sizes (data README) and choices per question
OFFICIAL = {"piqa": (1838, {2}), "winogrande": (1267, {2}), "hellaswag": (10042, {4}),
            "arc_easy": (2376, {3, 4, 5}), "arc_challenge": (1172, {3, 4, 5})}


@pytest.fixture(scope="module")
def tasks():
    """{paper task name: lm-eval Task} built through our YAMLs from the configured data dir."""
    with _task_manager("local", compose([]).data.dir) as manager:
        built = manager.load([LOCAL_PREFIX + t for t in TASK_METRICS])["tasks"]
    return {name[len(LOCAL_PREFIX):]: task for name, task in built.items()}


def docs_of(task):
    return list(task.test_docs() if task.has_test_docs() else task.validation_docs())


def gold_of(task, doc):
    """The gold choice index. WinoGrande is lm-eval's "multiple input" task: its choices are
    the contexts, doc_to_text gives the gold index and doc_to_target the shared continuation."""
    return task.doc_to_text(doc) if task.multiple_input else task.doc_to_target(doc)


@pytest.mark.slow  # reads and builds every document of the five sets
@pytest.mark.parametrize("name", list(OFFICIAL))
def test_each_task_loads_its_official_count_of_well_formed_docs(tasks, name):
    count, choice_counts = OFFICIAL[name]
    docs = docs_of(tasks[name])
    assert len(docs) == count
    seen_choice_counts = collections.Counter()
    for doc in docs:
        choices = tasks[name].doc_to_choice(doc)
        gold = gold_of(tasks[name], doc)
        assert len(choices) in choice_counts and all(c.strip() for c in choices)
        assert isinstance(gold, int) and 0 <= gold < len(choices)
        seen_choice_counts[len(choices)] += 1
    assert set(seen_choice_counts) == choice_counts  # ARC's 3- and 5-choice questions included


@pytest.mark.slow  # reads every label of the five sets
def test_gold_labels_match_the_data_readme(tasks):
    def golds(name):
        task = tasks[name]
        return collections.Counter(gold_of(task, d) for d in docs_of(task))

    assert golds("piqa") == {0: 910, 1: 928}  # valid-labels.lst: 0 = sol1, 1 = sol2
    assert golds("winogrande") == {0: 628, 1: 639}  # answer "1" -> option1
    assert golds("hellaswag") == {0: 2515, 1: 2485, 2: 2584, 3: 2458}


def test_arc_numeric_labels_resolve_to_the_right_choice(tasks):
    task = tasks["arc_easy"]
    numeric = [d for d in docs_of(task) if d["answerKey"].isdigit()]
    assert len(numeric) == 97  # data README: 97 ARC-Easy questions label choices 1-4
    for doc in numeric:
        assert doc["choices"]["label"][task.doc_to_target(doc)] == doc["answerKey"]


def test_hellaswag_prompt_is_lm_evals_for_the_original_fields(tasks):
    """The first validation item is, in the original data, activity_label "Roof shingle
    removal", ctx_a "A man is sitting on a roof.", ctx_b "he": lm-eval capitalises ctx_b."""
    first = docs_of(tasks["hellaswag"])[0]
    assert tasks["hellaswag"].doc_to_text(first) == \
        "Roof shingle removal: A man is sitting on a roof. He"


@pytest.mark.parametrize("ctx,expected", [
    ("A man is sitting on a roof. he", ("A man is sitting on a roof.", "he")),
    ("the boy", ("", "the boy")),
    ("How to cook rice. Rinse the rice.", ("How to cook rice. Rinse the rice.", "")),
])
def test_split_hellaswag_context(ctx, expected):
    assert split_hellaswag_context(ctx) == expected


def test_editing_a_task_yaml_changes_the_dense_cache_key(tmp_path, monkeypatch):
    """A task YAML sets prompts, splits and metrics: cached dense scores must not outlive an
    edit of one. The key follows the YAMLs' content, not where they lie."""
    cfg = compose(["model=tiny_llama", "eval=demo", f"paths.runs_dir={tmp_path}"])
    original = dense_cache_path(cfg)
    folder = tmp_path / "tasks"
    shutil.copytree(TASKS_DIR, folder)
    monkeypatch.setattr(yopo.eval, "TASKS_DIR", folder)
    assert dense_cache_path(cfg) == original  # same content elsewhere: same key
    piqa = folder / "piqa.yaml"
    piqa.write_text(piqa.read_text().replace("validation_split: validation",
                                             "validation_split: train"))
    assert dense_cache_path(cfg) != original

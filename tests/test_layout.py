"""The package's house: each module imports only from its own floor or below (lazy imports
inside functions included; `if TYPE_CHECKING:` imports are type hints only), so no arrow of the
import graph points back up. The floors are the README's Layout section, bottom first."""
import ast
from pathlib import Path

import pytest

import yopo

PACKAGE = Path(yopo.__file__).parent
FLOORS = [
    ["errors", "io", "paper", "progress", "device"],  # plain helpers, the paper's numbers, the device
    ["data", "adapters", "modeling"],         # the data folder and texts; model families; classes
    ["models"],                               # loading models
    ["methods"],                              # pruning methods (PruneNet's pieces inside)
    ["spectra", "eval"],                      # a run's spectra; evaluation
    ["rft"],                                  # recovery fine-tuning
    ["identity"],                             # what identifies a run
    ["config"],                               # Hydra composition
    ["results"],                              # reading runs, tables
    ["tracking", "render", "prepare"],        # wandb; notebooks; model preparation
    ["pipeline"],                             # one run
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}


def room(module: str) -> str:
    """The top-level room of a dotted module under yopo ("methods" for yopo.methods.x.y)."""
    return module.split(".")[1] if "." in module else ""


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def type_checking_blocks(tree):
    return {id(node) for stmt in ast.walk(tree) if isinstance(stmt, ast.If)
            and getattr(stmt.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(stmt)}


def imported(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    hints = type_checking_blocks(tree)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("yopo"):
                found |= {f"{target}.{a.name}" if target == "yopo" else target
                          for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("yopo")}
    return found


def test_every_room_has_a_floor():
    rooms = {room(m) for m, _ in modules()} - {""}
    assert rooms <= set(FLOOR), f"rooms without a floor: {sorted(rooms - set(FLOOR))}"


@pytest.mark.parametrize("module,path", list(modules()), ids=lambda v: str(v))
def test_no_import_points_up(module, path):
    here = room(module)
    if not here:
        return
    for target in imported(module, path):
        there = room(target)
        assert not there or FLOOR[there] <= FLOOR[here], (
            f"{module} (floor {FLOOR[here]}) imports {target} (floor {FLOOR[there]})")


def test_the_check_sees_lazy_relative_imports():
    """The checker itself: a lazy relative import two levels up is resolved and found."""
    path = PACKAGE / "methods" / "base.py"
    assert "yopo.data.wikitext" in imported("yopo.methods.base", path)


def test_progress_writes_whole_lines_off_a_terminal(capsys):
    """In a log (stderr is not a terminal under pytest) a bar is one line per update."""
    from yopo.progress import progress

    bar = progress(range(3), desc="steps", mininterval=0)
    for _ in bar:
        bar.set_postfix(ks="0.1234")
    err = capsys.readouterr().err
    assert "\r" not in err and err.endswith("\n")
    lines = err.strip().split("\n")
    assert lines[-1].startswith("steps: 100%") and "3/3" in lines[-1] and "ks=0.1234" in lines[-1]

"""Execute the notebooks headless: `python -m yopo.render --runs DIR --out DIR`.

Each paired jupytext source notebooks/NN_*.py becomes an .ipynb that papermill runs with the
`parameters` cell overridden (runs_dir, tables_dir, figures_dir); the executed notebooks are
kept under <out>/notebooks/ so a reader sees the tables and figures in context. Used by the
DVC `render` stage and by the tests: one way to run a notebook.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .config import REPO_ROOT
from .io import atomic_file
from .progress import progress

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def notebook_sources() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def render_notebook(source: Path, executed: Path, parameters: dict, cwd: Path | None = None
                    ) -> Path:
    """Run one jupytext source with papermill (python3 kernel); write the executed notebook."""
    import jupytext
    import papermill

    with tempfile.TemporaryDirectory() as tmp:
        ipynb = Path(tmp) / f"{source.stem}.ipynb"
        jupytext.write(jupytext.read(source), ipynb)
        with atomic_file(executed) as out:
            papermill.execute_notebook(str(ipynb), str(out), kernel_name="python3",
                                       cwd=str(cwd or tmp), progress_bar=False,
                                       parameters=parameters)
    return executed


def render_all(runs_dir: Path, out_dir: Path) -> list[Path]:
    params = {"runs_dir": str(runs_dir), "tables_dir": str(out_dir / "tables"),
              "figures_dir": str(out_dir / "figures")}
    return [render_notebook(src, out_dir / "notebooks" / f"{src.stem}.ipynb", params)
            for src in progress(notebook_sources(), desc="notebooks")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder of run folders")
    parser.add_argument("--out", type=Path, required=True,
                        help="writes <out>/tables, <out>/figures, <out>/notebooks")
    args = parser.parse_args()
    for path in render_all(args.runs.resolve(), args.out.resolve()):
        print(f"rendered {path}")

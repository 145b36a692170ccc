"""The layers of docs/architecture.md hold: ``lint-imports`` checks the contracts in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the test extras: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[1]
_LINT = ("import sys; from importlinter.cli import lint_imports; "
         "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")


def _lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    # a child process, so the lofi checked is the one under ``src``, whatever this process imported
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", _LINT, str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_against_the_layers_breaks_a_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "src" / "lofi", tmp_path / "lofi", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "lofi" / "data" / "annotations.py", "a") as f:
        f.write("\nfrom lofi.models import registry  # data must not import models\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "lofi.data.annotations -> lofi.models.registry" in result.stdout, result.stdout

"""The packages stand in layers: every import runs down, none runs back up, and no package imports a sibling.

    fit                 reads measurements (calibrate), writes profiles (strata.profile), uses the catalog (advisor)
    advisor  calibrate  side by side: neither imports the other
    strata   profiles   the ground floor (the law, tiers, tier map, profile format, result rows, errors) and the
                        shipped profile files; they import none of the above

Checked on the source (``ast``), lazy imports inside functions included, so no import can hide from it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"strata": 0, "profiles": 0, "advisor": 1, "calibrate": 1, "fit": 2}
HEAVY = {"torch", "jax", "jaxlib", "numpyro", "lm_eval", "transformers", "datasets", "gptqmodel", "ray", "submitit"}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _modules():
    for pkg in LAYER:
        for path in sorted((ROOT / pkg).glob("*.py")):
            yield pkg, path


@pytest.mark.parametrize(("pkg", "path"), list(_modules()), ids=lambda v: getattr(v, "name", v))
def test_imports_run_down_only(pkg: str, path: Path) -> None:
    for dep in _imports(path) & set(LAYER):
        if dep == pkg:
            continue
        assert LAYER[dep] < LAYER[pkg], f"{path.relative_to(ROOT)} imports {dep}: an import that runs up or sideways"


@pytest.mark.parametrize("pkg", ["strata", "profiles", "advisor"])
def test_light_packages_import_no_heavy_stack(pkg: str) -> None:
    for path in sorted((ROOT / pkg).glob("*.py")):
        heavy = _imports(path) & HEAVY
        assert not heavy, f"{path.relative_to(ROOT)} imports {sorted(heavy)}"


def test_the_check_sees_a_cycle(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from fit.ols import FitError\n")
    assert "fit" in _imports(bad)  # a lazy import inside a function is seen

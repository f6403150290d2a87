"""Build a wheelhouse for an air-gapped GPU node: strata and the dependencies the node's image lacks, as wheels.

    python scripts/wheelhouse.py --out wheelhouse --extras calibrate,fit --python 3.12
    # on the node, with no internet:
    pip install --no-index --find-links wheelhouse "strata[calibrate,fit]"

GPU images usually ship torch, transformers, jax and their CUDA libraries; a sweep node then only needs the light
pure-Python rest (pydantic, lm-eval, datasets, ...). pip alone cannot do this: ``pip download`` for another
platform resolves the *whole* tree (dragging in a multi-GB torch for that platform) and has no "already there"
list. So this script walks the requirement tree itself (``packaging`` evaluates each marker for the *target*
interpreter), skips what ``--skip`` names as present on the node, downloads every other wheel with ``pip download
--no-deps`` for the target platform, builds a pure-Python wheel locally where PyPI has only a source archive, and
builds strata's own wheel. Versions: the newest that satisfies the first requirement met; a later requirement the
chosen version does not satisfy makes it pick again under all constraints seen; what no version satisfies is
reported (install would fail there), never silently ignored.
"""

from __future__ import annotations

import argparse
import email.parser
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# What the project's GPU nodes provide (see the device notes: torch, transformers, jax, numpyro, optax and their
# CUDA stack); pass --skip '' to carry everything.
DEFAULT_SKIP = (
    "torch,transformers,tokenizers,safetensors,huggingface-hub,jax,jaxlib,numpyro,optax,numpy,triton,"
    "nvidia-*,jax-cuda12-plugin,jax-cuda12-pjrt,setuptools,pip,wheel"
)
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (39, 35, 34, 31, 28, 27, 24, 17)] + ["manylinux2014_x86_64"]


def target_env(python: str) -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": "",
    }


def skipped(name: str, skip: list[str]) -> bool:
    return any(name == s or (s.endswith("*") and name.startswith(s[:-1])) for s in skip)


def project_requirements(extras: list[str]) -> list[Requirement]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in meta.get("dependencies", [])]
    optional = meta.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            sys.exit(f"error: unknown extra {extra!r}; pyproject.toml has {', '.join(optional)}")
        for r in optional[extra]:
            req = Requirement(r)
            if canonicalize_name(req.name) == "strata":  # e.g. all = ["strata[fit,calibrate]"]
                reqs += project_requirements(sorted(req.extras))
            else:
                reqs.append(req)
    return reqs


def download(req: Requirement, out: Path, python: str) -> Path:
    """One wheel for ``req`` on the target platform; a locally built pure-Python wheel if PyPI has only an sdist."""
    before = set(out.glob("*.whl"))
    spec = f"{req.name}{req.specifier}"
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(out)]
    cmd += ["--python-version", python, "--implementation", "cp", "--abi", f"cp{python.replace('.', '')}"]
    cmd += ["--abi", "abi3", "--abi", "none"]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    if subprocess.run([*cmd, spec], capture_output=True, text=True, check=False).returncode != 0:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary", req.name, "-w", tmp, spec],
                check=True,
            )
            (built,) = Path(tmp).glob("*.whl")
            if not built.name.endswith("-none-any.whl"):
                sys.exit(f"error: {built.name} is not pure Python; build it on a machine like the target")
            built.rename(out / built.name)
    new = set(out.glob("*.whl")) - before
    if new:
        return new.pop()
    # pip found it already in the folder
    name = canonicalize_name(req.name)
    for whl in out.glob("*.whl"):
        if canonicalize_name(whl.name.split("-")[0]) == name and Version(whl.name.split("-")[1]) in req.specifier:
            return whl
    raise SystemExit(f"error: no wheel for {spec} after download")


def requires(whl: Path) -> list[Requirement]:
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    return [Requirement(r) for r in msg.get_all("Requires-Dist") or []]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="wheelhouse")
    ap.add_argument("--extras", default="calibrate,fit", help="strata extras to carry (comma-separated)")
    ap.add_argument("--python", default="3.12", help="target interpreter version, e.g. 3.12")
    ap.add_argument("--skip", default=DEFAULT_SKIP, help="distributions the node already has (comma, * allowed)")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skip = [canonicalize_name(s) if not s.endswith("*") else s for s in args.skip.split(",") if s]
    env = target_env(args.python)
    extras = [e for e in args.extras.split(",") if e]
    queue = [(r, "") for r in project_requirements(extras)]
    chosen: dict[str, tuple[Version, Path]] = {}
    specs: dict[str, SpecifierSet] = {}
    conflicts: list[str] = []
    while queue:
        req, extra = queue.pop(0)
        if req.marker is not None and not req.marker.evaluate({**env, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        if skipped(name, skip):
            continue
        specs[name] = specs.get(name, SpecifierSet()) & req.specifier
        if name in chosen:
            version, whl = chosen[name]
            if version not in req.specifier:  # pick again under every constraint seen so far
                joint = Requirement(f"{req.name}{specs[name]}")
                try:
                    whl.unlink()
                    whl = download(joint, out, args.python)
                except (SystemExit, subprocess.CalledProcessError):
                    conflicts.append(f"{name}: no version satisfies {specs[name]}")
                    continue
                version = Version(whl.name.split("-")[1])
                chosen[name] = (version, whl)
                print(f"{name}=={version} (re-picked for {specs[name]})", flush=True)
                queue += [(r, e) for e in ("", *sorted(req.extras)) for r in requires(whl)]
            elif req.extras:  # extras of a package already chosen still add requirements
                queue += [(r, e) for e in req.extras for r in requires(whl)]
            continue
        whl = download(req, out, args.python)
        version = Version(whl.name.split("-")[1])
        chosen[name] = (version, whl)
        print(f"{name}=={version}", flush=True)
        queue += [(r, e) for e in ("", *sorted(req.extras)) for r in requires(whl)]
    for name, (version, _whl) in chosen.items():  # a version picked before a later, stricter constraint
        if version not in specs[name]:
            conflicts.append(f"{name} {version} does not satisfy {specs[name]}")

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)], check=True)
    size = sum(p.stat().st_size for p in out.glob("*.whl")) / 2**20
    print(f"{out}: {len(list(out.glob('*.whl')))} wheels, {size:.1f} MiB (strata + {len(chosen)} dependencies)")
    print(f'install offline: pip install --no-index --find-links {out} "strata[{",".join(extras)}]"')
    if conflicts:
        print("version conflicts (pin one of them with --skip or by hand):", *conflicts, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()

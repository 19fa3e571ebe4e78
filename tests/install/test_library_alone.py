"""``lstm_core`` works with only its own dependencies (issue 22, item 5).

``pip install lstm-suite`` installs the library's dependencies (pyproject ``dependencies``, plus the
``tflm`` extra for the TFLM runtime); the tasks need the ``suite`` extra. The default test runs the
library in a subprocess where importing anything that only the suite brings (every distribution in the
``suite`` extra's dependency closure that the library's closure lacks, and ``tasks`` itself) raises
``ModuleNotFoundError``, child processes included (a ``sitecustomize`` installs the blocker). The slow
test builds a real virtual environment holding only the library's distributions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from lstm_core.export import FUSED_LSTM_OP

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "lstm-suite"

BLOCKER = '''
import importlib.abc, os, sys

BLOCKED = frozenset(os.environ["LSTM_CORE_TEST_BLOCKED"].split(","))


class SuiteOnlyBlocker(importlib.abc.MetaPathFinder):
    """Makes the suite's dependencies look uninstalled."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not a dependency of lstm_core)", name=name)
        return None


sys.meta_path.insert(0, SuiteOnlyBlocker())
'''

# The library as a user of `pip install lstm-suite` would use it: an LSTM in their own Keras model,
# predict, one fit step, a LiteRT export checked against Keras, and the TFLM check of an int8 export.
LIBRARY_USE = '''
import json, sys, tempfile
from pathlib import Path

import keras
import numpy as np

import lstm_core
from lstm_core import LSTM
from lstm_core.export import FUSED_LSTM_OP, TFLiteModel, export_tflite_report

rng = np.random.default_rng(0)
x = rng.standard_normal((8, 6, 3)).astype("float32")
y = rng.integers(0, 2, (8, 1)).astype("float32")
model = keras.Sequential([keras.Input((6, 3), batch_size=1), LSTM(4), keras.layers.Dense(1, activation="sigmoid")])
model.compile("adam", "binary_crossentropy")
before = model.predict(x, batch_size=1, verbose=0)
history = model.fit(x, y, batch_size=1, epochs=1, steps_per_epoch=1, verbose=0)
after = model.predict(x, batch_size=1, verbose=0)
out = Path(tempfile.mkdtemp())
float_report = export_tflite_report(model, out / "model.tflite", sample_inputs=[[x[:1]]])
int8_report = export_tflite_report(model, out / "model_int8.tflite", quantization="int8",
                                   representative_dataset=lambda: ([x[i:i + 1]] for i in range(8)),
                                   sample_inputs=[[x[i:i + 1]] for i in range(4)], tflm="require", tflm_arena=False)
print(json.dumps({
    "lstm_core": lstm_core.__file__,
    "changed_by_fit": float(np.max(np.abs(after - before))),
    "loss": float(history.history["loss"][0]),
    "float_ops": TFLiteModel(out / "model.tflite").op_names(),
    "float_diff": float(float_report.max_abs_diff),
    "tflm": {key: int8_report.tflm[key] for key in ("loads", "max_lsb_diff", "ops")},
    "suite_modules": sorted(set(sys.argv[1].split(",")) & {name.partition(".")[0] for name in sys.modules}),
}))
'''


def _names(requirements) -> list[str]:
    return [Requirement(line).name for line in requirements if not Requirement(line).name == PROJECT]


def closure(names) -> set[str]:
    """Installed distributions ``names`` need, transitively (extras not followed; markers evaluated here)."""
    seen, pending = set(), [metadata.distribution(name).metadata["Name"] for name in names]
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-").replace(".", "-")
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            try:
                pending.append(metadata.distribution(requirement.name).metadata["Name"])
            except metadata.PackageNotFoundError:
                continue  # an optional platform dependency that is not installed here
    return seen


def dependency_lists() -> tuple[list[str], list[str]]:
    """(the library's distributions: dependencies + the tflm extra, the suite extra's), from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return _names(project["dependencies"] + extras["tflm"]), _names(extras["suite"])


def suite_only_modules() -> list[str]:
    """Top-level import names that only distributions outside the library's closure provide, and ``tasks``."""
    library, suite = dependency_lists()
    allowed = closure(library)
    blocked = closure(suite) - allowed
    providers: dict[str, set[str]] = {}
    for module, distributions in metadata.packages_distributions().items():
        providers.setdefault(module, set()).update(d.lower().replace("_", "-").replace(".", "-") for d in distributions)
    modules = {module for module, dists in providers.items() if dists and dists <= blocked and module.isidentifier()}
    return sorted(modules | {"tasks"})


def test_dependency_lists_split_library_and_suite():
    library, suite = dependency_lists()
    assert {"tensorflow", "keras", "numpy", "ai-edge-litert"} <= set(library) and len(library) <= 6
    assert not {"scikit-learn", "statsforecast", "pandas", "matplotlib"} & set(library)
    assert {"scikit-learn", "statsforecast", "sacrebleu", "vaderSentiment"} <= set(suite)


def test_lstm_core_layer_export_and_tflm_with_only_its_dependencies(tmp_path):
    blocked = suite_only_modules()
    for module in ("sklearn", "statsforecast", "pandas", "matplotlib", "scipy", "sacrebleu", "sentencepiece",
                   "vaderSentiment", "holidays", "tensorflow_datasets", "tensorflow_text", "statsmodels",
                   "espeakng_loader", "tensorboard", "tasks"):
        assert module in blocked, module  # derived from pyproject + installed metadata, checked by name here
    assert not {"tensorflow", "keras", "numpy", "ai_edge_litert", "tflite_micro", "flatbuffers"} & set(blocked)
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "LSTM_CORE_TEST_BLOCKED": ",".join(blocked), "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    probe = subprocess.run([sys.executable, "-c", "import sklearn"], env=env, capture_output=True, text=True)
    assert probe.returncode == 1 and "not a dependency of lstm_core" in probe.stderr  # the blocker is on
    result = subprocess.run([sys.executable, "-c", LIBRARY_USE, ",".join(blocked)], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["lstm_core"]).is_relative_to(ROOT / "lstm_core")
    assert report["suite_modules"] == [] and report["changed_by_fit"] > 0 and report["loss"] > 0
    assert FUSED_LSTM_OP in report["float_ops"] and report["float_diff"] < 1e-4
    assert report["tflm"]["loads"] and report["tflm"]["max_lsb_diff"] <= 2


def link_distribution(name: str, site: Path) -> None:
    """Make distribution ``name`` of this interpreter importable from ``site`` (symlinks to its files).

    Namespace packages (``google``) get a real folder holding links to this distribution's part only.
    """
    distribution = metadata.distribution(name)
    base = Path(distribution.locate_file(""))
    for top in sorted({Path(str(file)).parts[0] for file in distribution.files or []} - {".."}):
        source = base / top
        if source.is_dir() and not (source / "__init__.py").exists() and not top.endswith((".dist-info", ".libs")):
            parts = {Path(str(f)).parts[1] for f in distribution.files if Path(str(f)).parts[0] == top
                     and len(Path(str(f)).parts) > 2}
            (site / top).mkdir(exist_ok=True)
            for part in parts:
                if not (site / top / part).exists():
                    (site / top / part).symlink_to(source / part)
        elif source.exists() and not (site / top).exists():
            (site / top).symlink_to(source)


@pytest.mark.slow
def test_lstm_core_in_a_venv_holding_only_its_distributions(tmp_path):
    """A real environment: the wheel (``--no-deps``) plus the library's dependency closure, nothing else.

    pip's cache here holds no TensorFlow wheel and downloading ~1 GB for a test is not reasonable, so
    the closure's distributions are linked from this interpreter's site-packages; ``pip check`` then
    proves the environment complete by the packages' own metadata.
    """
    from test_wheel_install import build_wheel, make_venv, ok, run, site_packages

    (tmp_path / "wheel").mkdir()
    built = build_wheel(tmp_path / "wheel")
    library, _ = dependency_lists()
    bin_dir = make_venv(tmp_path / "venv", built, system_site_packages=False)
    site = site_packages(bin_dir)
    for name in sorted(closure(library)):
        link_distribution(name, site)
    ok(run([sys.executable, "-m", "pip", "--python", bin_dir / "python", "check"], cwd=tmp_path))
    installed = ok(run([bin_dir / "python", "-c", "import importlib.metadata as m; "
                        "print('\\n'.join(sorted(d.metadata['Name'] for d in m.distributions())))"], cwd=tmp_path))
    assert not {"pandas", "scikit-learn", "statsforecast", "tensorboard"} & set(installed.split())
    result = run([bin_dir / "python", "-c", LIBRARY_USE, "pandas,sklearn,tasks"], cwd=tmp_path, timeout=600)
    report = json.loads(ok(result).strip().splitlines()[-1])
    assert Path(report["lstm_core"]).is_relative_to(site)
    assert report["changed_by_fit"] > 0 and FUSED_LSTM_OP in report["float_ops"] and report["tflm"]["loads"]
    lines = run([bin_dir / "lstm-suite", "--help"], cwd=tmp_path).stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'lstm-suite[suite]'" in lines[0]

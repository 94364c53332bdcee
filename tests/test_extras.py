"""The command line without the optional extras (serve, demo, gguf), and without third-party noise."""

import logging
import os
import subprocess
import sys

from tests.conftest import tiny_overrides, train_cli_args

EXTRAS = ("fastapi", "uvicorn", "prometheus_client", "plotnine", "sentencepiece")

# A meta-path finder that says the extras' modules are not installed: what `pip install .` without
# extras leaves, in this test's own process only
WITHOUT_EXTRAS = f"""
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if name.split(".")[0] in {EXTRAS!r} else _find(name, package)
from pricetune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _pricetune(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_train_and_dry_runs_work_without_the_extras_and_a_missing_one_is_named(tmp_path, tiny_model_dir,
                                                                                 small_dataset_dir):
    # another directory than the checkout: nothing found by accident
    r = _pricetune(["train", "--preset", "lite", "--dry-run"], tmp_path)
    assert r.returncode == 0 and "plan" in r.stdout, r.stderr[-2000:]
    overrides = tiny_overrides(tiny_model_dir, small_dataset_dir, tmp_path / "run", quantization="none",
                               save_steps=2, eval_steps=2)
    r = _pricetune(train_cli_args(overrides), tmp_path)
    assert r.returncode == 0 and (tmp_path / "run" / "summary.json").is_file(), r.stderr[-2000:]
    r = _pricetune(["serve", "--run", str(tmp_path / "run")], tmp_path)
    assert r.returncode == 2 and "pip install 'pricetune[serve]'" in r.stderr, r.stderr[-2000:]
    r = _pricetune(["train", "--preset", "demo", "--output-dir", str(tmp_path / "demo")], tmp_path)
    assert r.returncode == 2 and "pip install 'pricetune[demo]'" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_a_third_party_warning_nobody_can_act_on_is_not_printed(capsys, tmp_path):
    from pricetune.cli import main

    assert main(["evaluate", "--baseline", "median", "--dataset", "demo", "--limit", "5",
                 "--output-dir", str(tmp_path / "eval")]) == 0
    capsys.readouterr()
    # what bitsandbytes logs at import on CPUs with AVX-512 BF16 when the optional `kernels` package is missing
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning(
        "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'")
    assert "kernels-community" not in capsys.readouterr().err


def test_a_baseline_evaluation_loads_no_model_library(tmp_path):
    # bitsandbytes (and its warnings) come in with PEFT; a command that loads no model imports neither
    code = ("import sys; from pricetune.cli import main; "
            f"assert main(['evaluate', '--baseline', 'median', '--dataset', 'demo', '--limit', '5', '--output-dir', "
            f"{str(tmp_path / 'e')!r}]) == 0; "
            "print(sorted(m for m in ('bitsandbytes', 'peft', 'trl') if m in sys.modules))")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "[]", (r.stdout[-500:], r.stderr[-2000:])

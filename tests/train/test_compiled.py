"""--compile: which runs compile their decoder layers, and that a compiled run trains the same steps."""

import json

import pytest

from annotune.config import TrainConfig
from annotune.errors import AnnotuneError
from annotune.train import compiled, sft


def test_auto_compiles_only_long_single_process_cpu_runs():
    long = compiled.AUTO_MIN_STEPS
    assert compiled.wanted("auto", "cpu", 1, long) == (True, f"auto: {long} steps")
    assert not compiled.wanted("auto", "cpu", 1, long - 1)[0]  # too short to win the compile time back
    assert not compiled.wanted("auto", "cpu", 2, long)[0]
    assert not compiled.wanted("auto", "cuda:0", 1, long)[0]
    assert compiled.wanted("on", "cpu", 1, 3) == (True, "--compile on")
    assert compiled.wanted("off", "cpu", 1, 10 * long) == (False, "--compile off")


def test_without_a_cpp_compiler_auto_stays_eager_and_on_says_what_to_install(monkeypatch):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    assert compiled.wanted("auto", "cpu", 1, 10 * compiled.AUTO_MIN_STEPS) == (
        False, "auto: no C++ compiler (g++) found")
    with pytest.raises(AnnotuneError, match=r"needs a C\+\+ compiler.*--compile off"):
        compiled.wanted("on", "cpu", 1, 3)


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], [r["val_loss"] for r in rows if "val_loss" in r]


def test_a_compiled_run_trains_the_same_steps_as_an_eager_one(tiny, chats, tmp_path, monkeypatch, annotune_home):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # compiled kernels go to annotune's home
    base = dict(data=str(chats), model=str(tiny), batch_size=4, lr=1e-2, val_size=2, epochs=2, progress=False,
                lora_r=4, lora_alpha=8, replay=0, precision="fp32")
    eager = sft.train(TrainConfig(**base, out=str(tmp_path / "eager"), compile="off"))
    fast = sft.train(TrainConfig(**base, out=str(tmp_path / "compiled"), compile="on"))

    info = json.loads((fast / "run.json").read_text())
    assert info["compiled"] == {"layers": 2, "why": "--compile on"}  # the tiny model's two decoder layers
    assert json.loads((eager / "run.json").read_text())["compiled"] == {"layers": 0, "why": "--compile off"}
    assert any((annotune_home / "compile").iterdir())
    (train_e, val_e), (train_c, val_c) = _losses(eager), _losses(fast)
    assert len(train_c) == len(train_e) == 6 and len(val_c) == len(val_e) == 2
    assert train_c == pytest.approx(train_e, rel=1e-3) and val_c == pytest.approx(val_e, rel=1e-3)
    assert train_e[-1] < train_e[0]  # it did train
    assert (fast / "adapter" / "adapter_model.safetensors").is_file()

"""--compile: which runs compile their decoder layers, that a compiled run trains the same steps, and what happens
when compiling fails."""

import json

import pytest
import torch

from annotune.config import TrainConfig
from annotune.errors import AnnotuneError
from annotune.train import compiled, sft


@pytest.fixture
def amx(monkeypatch):
    monkeypatch.setattr(compiled, "_has_amx", lambda: True)


def test_auto_compiles_only_long_single_process_runs_on_cpus_with_amx(amx, monkeypatch):
    long = compiled.AUTO_MIN_STEPS
    assert compiled.wanted("auto", "cpu", 1, long) == (True, f"auto: {long} steps on a CPU with AMX")
    assert not compiled.wanted("auto", "cpu", 1, long - 1)[0]  # too short to win the compile time back
    assert not compiled.wanted("auto", "cpu", 2, long)[0]
    assert not compiled.wanted("auto", "cuda:0", 1, long)[0]
    assert compiled.wanted("on", "cpu", 1, 3) == (True, "--compile on")
    assert compiled.wanted("off", "cpu", 1, 10 * long) == (False, "--compile off")
    monkeypatch.setattr(compiled, "_has_amx", lambda: False)
    assert compiled.wanted("auto", "cpu", 1, 10 * long) == (False, "auto: only CPUs with AMX gained enough to compile")


def test_without_a_cpp_compiler_auto_stays_uncompiled_and_on_says_what_to_install(amx, monkeypatch):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    assert compiled.wanted("auto", "cpu", 1, 10 * compiled.AUTO_MIN_STEPS) == (
        False, "auto: needs a C++ compiler (g++; Debian/Ubuntu: apt install g++)")
    with pytest.raises(AnnotuneError, match=r"needs a C\+\+ compiler.*apt install g\+\+.*--compile off"):
        compiled.wanted("on", "cpu", 1, 3)


def _cfg(tiny, chats, out, **kw):
    return TrainConfig(**{**dict(data=str(chats), model=str(tiny), batch_size=4, lr=1e-2, val_size=2, epochs=2,
                                 progress=False, lora_r=4, lora_alpha=8, replay=0, precision="fp32", out=str(out)),
                          **kw})


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], [r["val_loss"] for r in rows if "val_loss" in r]


def test_a_compiled_run_trains_the_same_steps_as_an_uncompiled_one(tiny, chats, tmp_path, monkeypatch, annotune_home):
    from torch._dynamo.utils import counters
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # inductor's own default: not a choice
    eager = sft.train(_cfg(tiny, chats, tmp_path / "eager", compile="off"))
    counters.clear()
    fast = sft.train(_cfg(tiny, chats, tmp_path / "compiled", compile="on"))
    # one graph serves every layer (the first one's input needs a gradient too), and it could be cached
    assert counters["stats"]["unique_graphs"] == 1
    aot = counters["aot_autograd"]
    assert aot["autograd_cache_bypass"] == 0 and aot["autograd_cache_hit"] + aot["autograd_cache_saved"] == 1
    # the run put torch.compile's settings back as it found them
    assert torch._dynamo.config.specialize_float is False
    assert not set(compiled.AUTOCAST_SWITCHES) & set(torch._inductor.config.unsafe_marked_cacheable_functions)

    info = json.loads((fast / "run.json").read_text())
    assert info["compiled"] == {"layers": 2, "why": "--compile on"}  # the tiny model's two decoder layers
    assert json.loads((eager / "run.json").read_text())["compiled"] == {"layers": 0, "why": "--compile off"}
    assert any((annotune_home / "compile").iterdir())  # inductor's kernels went to annotune's home
    (train_e, val_e), (train_c, val_c) = _losses(eager), _losses(fast)
    assert len(train_c) == len(train_e) == 6 and len(val_c) == len(val_e) == 2
    assert train_c == pytest.approx(train_e, rel=1e-3) and val_c == pytest.approx(val_e, rel=1e-3)
    assert train_e[-1] < train_e[0]  # it did train
    assert (fast / "adapter" / "adapter_model.safetensors").is_file()


def _failing_compile(monkeypatch):
    """torch.compile with a backend that cannot compile anything, as a broken toolchain would."""
    def backend(graph, inputs):
        raise RuntimeError("the C++ compiler is broken")

    def compile_layers(model):
        layers = [m for m in model.modules() if type(m).__name__ == "LlamaDecoderLayer"]
        for layer in layers:
            layer.compile(backend=backend, dynamic=True)
        return len(layers)

    monkeypatch.setattr(compiled, "compile_layers", compile_layers)
    monkeypatch.setattr(compiled, "wanted", lambda setting, *a: (setting != "off", f"{setting}: test"))


def test_auto_trains_on_uncompiled_when_compiling_fails(tiny, chats, tmp_path, monkeypatch):
    eager = sft.train(_cfg(tiny, chats, tmp_path / "eager", compile="off"))
    _failing_compile(monkeypatch)
    run = sft.train(_cfg(tiny, chats, tmp_path / "run", compile="auto"))
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["compiled"]["layers"] == 0
    assert info["compiled"]["why"] == "auto: compiling failed at step 1: RuntimeError: the C++ compiler is broken"
    assert _losses(run) == _losses(eager)  # the failed step was taken again from where it began


def test_on_stops_with_a_clear_error_when_compiling_fails(tiny, chats, tmp_path, monkeypatch):
    _failing_compile(monkeypatch)
    expected = r"failed at step 1 \(RuntimeError: the C\+\+ compiler is broken\); train with --compile off"
    with pytest.raises(sft.TrainingError, match=r"--compile on: compiling the decoder layers " + expected):
        sft.train(_cfg(tiny, chats, tmp_path / "run", compile="on"))

"""benchmarks/domain_sweep.py's bookkeeping: seeds, means and the worst-domain rule (training and evaluation are
replaced here; the sweep itself runs them for real, see docs/benchmarks.md)."""

import importlib.util
import sys

import pytest
from conftest import REPO


@pytest.fixture
def sweep_module(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("domain_sweep", REPO / "benchmarks" / "domain_sweep.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "domain_sweep", module)
    spec.loader.exec_module(module)
    return module


def test_seeds_train_every_setting_once_each_and_judge_by_the_mean(sweep_module, tmp_path, monkeypatch):
    held_out = {("bank", "defaults", "42"): 0.8, ("bank", "defaults", "7"): 0.6,
                ("transit", "defaults", "42"): 0.5, ("transit", "defaults", "7"): 0.3,
                ("bank", "no-replay", "42"): 0.9, ("bank", "no-replay", "7"): 0.9,
                ("transit", "no-replay", "42"): 0.2, ("transit", "no-replay", "7"): 0.2}
    trained = []

    def fake_train(domain, options, run_dir, model):
        trained.append((domain.name, run_dir.name, options))
        return {"train_seconds": 100.0 if "--replay" in options else 200.0, "steps": 10, "examples": 5, "final": {}}

    def fake_evaluate(domain, runs, out, max_new_tokens):
        figures = {}
        for run in runs:
            name, _, seed = run.rpartition("-seed")
            figures[run] = {"heldout": held_out[(domain.name, name, seed)], "heldout_ci95": [0, 1],
                            "base_heldout": 0.0, "kept": 0.5 if seed == "42" else 0.7, "kept_of": 10,
                            "kept_n": 5 if seed == "42" else 7}
        return figures

    monkeypatch.setattr(sweep_module, "train", fake_train)
    monkeypatch.setattr(sweep_module, "evaluate", fake_evaluate)
    report = sweep_module.sweep(["defaults", "no-replay"], ["bank", "transit"], tmp_path, None, 64, None, None,
                                seeds=[42, 7])
    assert len(trained) == 8
    assert ("transit", "no-replay-seed7", ["--replay", "0", "--seed", "7"]) in trained
    bank = report["results"]["defaults"]["bank"]
    assert bank["heldout"] == pytest.approx(0.7) and bank["heldout_range"] == [0.6, 0.8]
    assert bank["kept"] == pytest.approx(0.6) and bank["kept_n"] == 6.0
    assert bank["seeds"][7]["heldout"] == 0.6
    # defaults: worst domain transit at 40% (mean of 50 and 30); no-replay: transit at 20%
    assert report["worst"]["defaults"]["heldout"] == ["transit", pytest.approx(0.4)]
    assert report["worst"]["no-replay"]["score"] == pytest.approx(0.2)
    assert report["best"] == "defaults"


def test_a_setting_cut_short_by_the_bounds_is_not_scored(sweep_module, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "train", lambda *a: {"train_seconds": 1.0, "steps": 1})
    monkeypatch.setattr(sweep_module, "evaluate", lambda domain, runs, *a: {
        r: {"heldout": 1.0, "base_heldout": 0.0, "kept": 1.0, "kept_of": 1, "kept_n": 1} for r in runs})
    report = sweep_module.sweep(["defaults"], ["bank"], tmp_path, None, 64, 1, None, seeds=[42, 7])
    assert report["not_run"] == ["defaults-seed7/bank"]
    assert report["results"]["defaults"] == {} and report["best"] is None


def test_thinning_leaves_every_nth_fact_one_phrasing_and_the_held_out_set_as_it_is(sweep_module, tmp_path):
    import json

    domain = tmp_path / "d"
    domain.mkdir()
    lines = [json.dumps({"messages": [{"role": "user", "content": f"Question {k} about fact {f}?"},
                                      {"role": "assistant", "content": f"Fact {f}."}]})
             for k in range(3) for f in range(4)]  # phrasings interleaved, as in no particular order
    (domain / "train.jsonl").write_text("\n".join(lines) + "\n")
    (domain / "heldout.jsonl").write_text('{"held": "out"}\n')
    out = sweep_module.thinned(domain, tmp_path / "thin", 2)
    kept = [json.loads(line)["messages"][1]["content"] for line in (out / "train.jsonl").read_text().splitlines()]
    assert sorted(kept) == ["Fact 0."] * 3 + ["Fact 1."] + ["Fact 2."] * 3 + ["Fact 3."]
    assert json.loads((out / "train.jsonl").read_text().splitlines()[1])["messages"][0]["content"] == \
        "Question 0 about fact 1?"  # a thinned fact keeps its first phrasing
    assert (out / "heldout.jsonl").read_text() == (domain / "heldout.jsonl").read_text()

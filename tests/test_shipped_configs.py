"""Every shipped config starts with the command that runs it and loads into the typed config."""

from pathlib import Path

import pytest

from annotune.config import TrainConfig, load_yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [p for p in REPO.glob("examples/**/*.yaml") if p.read_text().startswith("# annotune train")]


def test_there_are_shipped_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_config_loads(path):
    assert path.read_text().splitlines()[0] == f"# annotune train --config {path.relative_to(REPO)}"
    cfg = TrainConfig(**load_yaml(str(path)))
    assert cfg.data and (REPO / cfg.data).is_file()


def test_config_yaml_round_trips():
    import yaml

    cfg = TrainConfig(data="x.jsonl", lr=3e-4, lora_targets="q_proj,v_proj")
    assert TrainConfig(**yaml.safe_load(cfg.to_yaml())) == cfg

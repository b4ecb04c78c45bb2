"""Train the embedded model on the quickstart example with given settings and score held-out accuracy.

    python benchmarks/quickstart_sweep.py --epochs 3 --lr 1e-3 --lora-r 32 --batch-size 4 [--method full]

Prints one JSON line (settings, training seconds, base and tuned held-out accuracy); used to choose `train`'s
defaults for small datasets (docs/benchmarks.md).
"""

import argparse
import json
from pathlib import Path

from annotune.cli import _quiet_libraries
from annotune.config import TrainConfig, add_config_arguments
from annotune.quickstart import train_and_score

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/sweep")
    add_config_arguments(parser, TrainConfig, skip=("data", "val_data", "out", "overwrite", "resume", "progress"))
    args = vars(parser.parse_args())
    run = Path(args.pop("run"))
    model = args.pop("model", "smollm2-135m")
    _quiet_libraries()
    report = train_and_score(model, run, progress=False, **args)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))

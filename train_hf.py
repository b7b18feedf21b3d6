"""Train GReFEL (or the baseline) with the transformers Trainer; runs on CPU, one GPU or many through accelerate.

    accelerate launch train_hf.py                          # small GReFEL on the generated set, nothing downloaded
    accelerate launch train_hf.py recipes/NAME.yaml        # a recipe file ...
    accelerate launch train_hf.py recipes/NAME.yaml --num_train_epochs 3   # ... with arguments overriding it

`python train_hf.py --help` lists every argument: the project's own in groups first, then Trainer's.
"""

import logging
import sys

from grefel_hf.training.argument_parser import ArgumentError, parse_training_arguments
from grefel_hf.training.run import TrainingSetupError, run_training, setup_logging, teardown_distributed

logger = logging.getLogger("train_hf")


def main() -> int:
    try:
        model_args, data_args, training_args = parse_training_arguments(sys.argv[1:])
    except (ArgumentError, ValueError) as err:
        print(f"train_hf.py: error: {err}", file=sys.stderr)
        return 2
    setup_logging(training_args)
    try:
        summary = run_training(model_args, data_args, training_args)
    except (TrainingSetupError, FileNotFoundError) as err:
        print(f"train_hf.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        teardown_distributed()
    if summary.is_main_process:
        print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())

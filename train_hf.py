"""Train GReFEL with the transformers Trainer; runs on CPU, one GPU or many through accelerate.

    accelerate launch train_hf.py                      # small GReFEL on the generated set, nothing downloaded
    accelerate launch train_hf.py --dataset fer2013 --data_dir /data/fer2013 --backbone tf_efficientnet_lite0 \\
        --backbone_weights efficientnet-lite0 --image_size 112 --output_dir outputs/fer2013
    accelerate launch train_hf.py recipe.yaml          # every argument from one .json / .yaml file

`python train_hf.py --help` lists every argument (model, data and training).
"""

import sys

from transformers import HfArgumentParser

from grefel_hf.training.arguments import DataArguments, GReFELTrainingArguments, ModelArguments
from grefel_hf.training.run import run_training, setup_logging, teardown_distributed


def parse_arguments():
    parser = HfArgumentParser((ModelArguments, DataArguments, GReFELTrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        return parser.parse_json_file(sys.argv[1])
    if len(sys.argv) == 2 and sys.argv[1].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(sys.argv[1])
    return parser.parse_args_into_dataclasses()


def main() -> None:
    model_args, data_args, training_args = parse_arguments()
    setup_logging(training_args)
    try:
        run_training(model_args, data_args, training_args)
    finally:
        teardown_distributed()


if __name__ == "__main__":
    main()

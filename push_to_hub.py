"""Publish a trained GReFEL model on the Hugging Face Hub: stage, validate without grefel_hf, upload.

    python push_to_hub.py --model_dir outputs/fer2013 --repo_id you/grefel-fer2013 \\
        --metrics outputs/fer2013/eval/metrics.json --dataset_name FER2013 --dataset_split test
    python push_to_hub.py --model_dir outputs/fer2013 --repo_id you/grefel-fer2013 --local_dir staged/  # no upload

Uploading needs network access and a token (`hf auth login` or HF_TOKEN). `python push_to_hub.py --help` lists
every argument.
"""

import logging
import sys

from transformers import HfArgumentParser

from grefel_hf.publish import PushArguments, publish

logger = logging.getLogger("push_to_hub")


def main() -> None:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    try:
        (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses()
        result = publish(args)
    except (OSError, ValueError, RuntimeError) as err:
        logger.debug("push failed", exc_info=True)
        print(f"push_to_hub.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    if result.uploaded:
        logger.info("published https://huggingface.co/%s (%s)", result.repo_id, result.commit_url)
    else:
        logger.info("staged and validated %s; nothing was uploaded (--local_dir)", result.staged_dir)


if __name__ == "__main__":
    main()

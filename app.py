"""The grefel_hf demo as a Hugging Face Space (or locally: `python app.py`; `grefel-hf demo` is the same page).

A Space runs this file as it is, from a copy of this repository: grefel_hf is imported from the files beside it when
it is not installed. The server binds GRADIO_SERVER_NAME and GRADIO_SERVER_PORT where they are set (a Space sets
0.0.0.0 and 7860), 127.0.0.1:7860 otherwise. On a Space the box for a model folder on the server is not offered.
See docs/demo.md.
"""

import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before Gradio is imported
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from local folders only
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    logging.basicConfig(format="%(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from grefel_hf.demo.app import launch_demo
    from grefel_hf.demo.options import DEFAULT_HOST, DEFAULT_PORT, DemoOptions

    on_space = "SPACE_ID" in os.environ
    options = DemoOptions(host=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
                          port=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
                          local_models=not on_space, examples_dir=str(HERE / "examples"))
    launch_demo(options)


if __name__ == "__main__":
    main()

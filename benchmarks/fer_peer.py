"""The `fer` package's photo path, timed on given image files (helper of inference.py; not part of grefel_hf).

Run with the Python of a separate virtual environment where `pip install fer` was done (fer pulls TensorFlow, which
must never be a grefel_hf dependency):

    /path/to/fer-venv/bin/python benchmarks/fer_peer.py --repeats 3 image1.jpg image2.jpg ...

Each image is decoded once with OpenCV (BGR, as fer expects); `FER().detect_emotions(image)` (fer's defaults: the
OpenCV Haar cascade and its Keras model) then runs on every image, once to warm up and `--repeats` times more. It
prints one JSON line: photos, faces found, and the seconds of each timed pass.
"""

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import cv2
    from fer.fer import FER

    images = [cv2.imread(path) for path in args.images]
    detector = FER()
    faces = sum(len(detector.detect_emotions(image)) for image in images)  # warm-up pass
    passes = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for image in images:
            detector.detect_emotions(image)
        passes.append(time.perf_counter() - start)
    print(json.dumps({"photos": len(images), "faces": faces, "seconds": passes}))


if __name__ == "__main__":
    main()

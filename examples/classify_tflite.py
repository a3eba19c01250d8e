"""Classify one image with an AutoVision ``.tflite`` file alone: no AutoVision, no PyTorch.

Needs only ``pip install ai-edge-litert pillow numpy``. The label file is read from the
zip archive attached to the ``.tflite`` file (as Android's Image Classifier task reads
it); the input size from the model. Mean and std are the training normalisation: the
ImageNet values unless the run was trained with others (see its model.json).

    python examples/classify_tflite.py model.tflite photo.jpg
"""

from __future__ import annotations

import argparse
import zipfile

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def main() -> None:
    """Print the top labels and their probabilities for one image."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("image")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN)
    parser.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD)
    args = parser.parse_args()

    with zipfile.ZipFile(args.model) as archive:
        labels = archive.read("labels.txt").decode().splitlines()
    interpreter = Interpreter(model_path=args.model, num_threads=1)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    _, height, width, _ = source["shape"]
    pixels = np.asarray(Image.open(args.image).convert("RGB").resize((width, height), Image.Resampling.BILINEAR))
    image = ((pixels / 255.0 - np.array(args.mean)) / np.array(args.std))[None].astype(np.float32)
    if source["dtype"] != np.float32:  # full-integer int8 file: quantise with its own scale
        scale, zero = source["quantization"]
        image = np.clip(np.round(image / scale + zero), -128, 127).astype(source["dtype"])
    interpreter.set_tensor(source["index"], image)
    interpreter.invoke()
    logits = interpreter.get_tensor(target["index"])[0].astype(np.float32)
    if target["dtype"] != np.float32:
        scale, zero = target["quantization"]
        logits = (logits - zero) * scale
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    for index in np.argsort(-probabilities)[: args.top]:
        print(f"{labels[index]}\t{probabilities[index]:.3f}")


if __name__ == "__main__":
    main()

"""Eager PyTorch baseline server for the serving load benchmark.

The same shape as ../shared/bench/eager_serve.py (standard-library threaded HTTP
server, PIL decode, preprocessing, forward at batch 1 in inference_mode, top-k as
JSON, keep-alive, no batching, one process), serving the SAME trained model as
Triton (the run's TorchScript export) through AutoVision's own preprocessing.
The shared script cannot run on the CPU machines here: its torchvision transforms
fail to import against the CPU build of torch.

  python benchmarks/eager_server.py --run RUN_DIR --port 8090
  POST /predict   raw image bytes, or {"payload": {"image": {"imageBytes": "<base64>"}}}
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

from autovision.contract.files import ModelCard
from autovision.preprocess import PreprocessConfig, preprocess_bytes


def load(run: Path) -> tuple[torch.jit.ScriptModule, list[str], PreprocessConfig]:
    """The run's TorchScript model, labels and preprocessing, from its model directory."""
    card = ModelCard.model_validate_json((run / "model" / "model.json").read_text())
    config = PreprocessConfig(size=int(card.input_size), mean=card.mean, std=card.std)
    model: torch.jit.ScriptModule = torch.jit.load(  # type: ignore[no-untyped-call]
        str(run / "model" / "model.pt"), map_location="cpu"
    ).eval()
    return model, list(card.labels), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run directory (file:// storage)")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()
    model, labels, config = load(args.run)
    k = min(args.top_k, len(labels))

    def predict(image: bytes) -> list[dict[str, Any]]:
        batch = torch.from_numpy(preprocess_bytes(image, config)).unsqueeze(0)
        with torch.inference_mode():
            outputs = model(batch)  # a run's archive returns (logits, embedding); older ones logits alone
            logits = outputs[0] if isinstance(outputs, tuple) else outputs
            scores, indices = logits.softmax(1)[0].topk(k)
        pairs = zip(scores.tolist(), indices.tolist(), strict=True)
        return [{"label": labels[i], "score": round(s, 6)} for s, i in pairs]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: object) -> None:
            pass

        def reply(self, code: int, answer: dict[str, Any]) -> None:
            body = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.reply(200, {"status": "ok"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                if body[:1] == b"{":
                    body = base64.b64decode(json.loads(body)["payload"]["image"]["imageBytes"])
                self.reply(200, {"predictions": predict(body)})
            except Exception as error:  # noqa: BLE001 - a bad body is the client's error
                self.reply(400, {"error": f"{type(error).__name__}: {error}"})

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(json.dumps({"ready": True, "url": f"http://127.0.0.1:{args.port}/predict"}), flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()

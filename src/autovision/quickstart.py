"""The quickstart: the whole local path on one machine, resumable after Ctrl-C.

import -> train -> evaluate -> export -> Triton repository -> tritonserver ->
one prediction over KServe v2 HTTP and gRPC, and one through the AutoML JSON gateway. Storage is ``file://`` under the
work directory, or a private SeaweedFS S3 endpoint with ``use_s3``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autovision.client import AutoMLPrediction, predict_automl
from autovision.contract.files import ModelCard
from autovision.contract.keys import TRITON_LOCAL, RunLocation
from autovision.data.digits import write_digits_zip
from autovision.data.importer import ImportResult, import_dataset
from autovision.data.manifest import ImageRecord
from autovision.embedded_s3 import EmbeddedS3, free_port
from autovision.pipeline import local_run_uid, train_evaluate_export
from autovision.preprocess import PreprocessConfig
from autovision.progress import Reporter
from autovision.serving import LocalTritonServer, Prediction, predict
from autovision.serving.gateway import GatewayConfig, GatewayServer
from autovision.serving.repository import download_repository
from autovision.settings import Settings
from autovision.storage import Storage, open_uri
from autovision.train.trainer import TrainConfig


@dataclass
class QuickstartResult:
    """What the quickstart did, for the summary it prints."""

    dataset: ImportResult
    run: RunLocation
    card: ModelCard
    image: ImageRecord
    served: Served


@dataclass
class Served:
    """One image's predictions: KServe v2 per protocol, and the gateway's AutoML JSON."""

    kserve: dict[str, list[Prediction]]
    automl: list[AutoMLPrediction]


@contextlib.contextmanager
def quickstart_storage(workdir: Path, use_s3: bool) -> Iterator[Storage]:
    """file:// storage under the work dir, or an embedded SeaweedFS kept in it."""
    if not use_s3:
        yield Storage.from_settings(Settings(storage_root=f"file://{(workdir / 'storage').absolute()}"))
        return
    with EmbeddedS3(workdir / "seaweedfs") as s3:
        yield Storage.from_settings(s3.settings())


def serve_and_predict(storage: Storage, run: RunLocation, image: ImageRecord, workdir: Path, top_k: int = 3) -> Served:
    """The quickstart's ModelDeployment: tritonserver plus the AutoML gateway, asked once each way."""
    repository = download_repository(storage, f"{run.prefix}/{TRITON_LOCAL}", workdir / "serving" / run.uid)
    with open_uri(image.uri, storage.settings) as handle:
        data = handle.read()
    with (
        LocalTritonServer(repository, work_dir=workdir / "triton") as server,
        GatewayServer(GatewayConfig(server.http_url), free_port()) as gateway,
    ):
        return Served(
            kserve={
                "http": predict(data, server.http_url, protocol="http", top_k=top_k),
                "grpc": predict(data, server.grpc_url, protocol="grpc", top_k=top_k),
            },
            automl=predict_automl(data, gateway.url),
        )


def run_local_path(
    storage: Storage,
    source: str,
    workdir: Path,
    reporter: Reporter,
    *,
    config: TrainConfig | None = None,
    dataset_name: str = "quickstart",
) -> QuickstartResult:
    """Import, train, evaluate, export, serve and predict against one storage."""
    config = config or TrainConfig()
    preprocess = PreprocessConfig()
    reporter.stage("Importing dataset", total=1)
    dataset = import_dataset(source, dataset_name, storage)
    reporter.update(1, f"{len(dataset.records)} images, version {dataset.version}")
    run = RunLocation("local", dataset_name, local_run_uid(dataset.version, config, preprocess))
    card = train_evaluate_export(
        storage, dataset_name, dataset.version, run, reporter, config=config, preprocess=preprocess
    )
    image = next(record for record in dataset.records if record.split == "test")
    reporter.stage("Serving with tritonserver", total=1)
    served = serve_and_predict(storage, run, image, workdir)
    reporter.update(1, "predictions over HTTP, gRPC and the AutoML gateway")
    return QuickstartResult(dataset=dataset, run=run, card=card, image=image, served=served)


def run_quickstart(
    workdir: Path,
    reporter: Reporter,
    data: str | None = None,
    use_s3: bool = False,
    config: TrainConfig | None = None,
) -> QuickstartResult:
    """Run the whole local path; a second call after an interruption continues."""
    source = data or str(write_digits_zip(workdir / "data" / "digits.zip"))
    with quickstart_storage(workdir, use_s3) as storage:
        return run_local_path(storage, source, workdir, reporter, config=config)

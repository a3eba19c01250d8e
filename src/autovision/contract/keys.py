"""The storage key layout: the one place that names every object of a dataset or a run.

Keys are relative to the storage root (``AUTOVISION_STORAGE_ROOT``)::

    datasets/<name>/latest.json                      pointer to the newest version
    datasets/<name>/import-progress.json             a running import's stage (removed when it ends)
    datasets/<name>/<version>/report.json            the import report
    datasets/<name>/<version>/shards/shard-00000.tar  the images, packed (tar, webdataset layout)
    datasets/<name>/<version>/index.parquet          one row per image, where it lies; written last
    datasets/<name>/<version>/manifest.jsonl         format 1 (before shards): read only to refuse
    datasets/<name>/import-slices/<run>/slice-000/shards/shard-00000.tar   a sliced import's staged shards
                                       /slice-000/files.parquet   the slice's files; written last (slice done)
    runs/<namespace>/<job>/<uid>/progress.json       the search's state, read by the operator
                                /study/journal.log   the search's shared Optuna study
                                /trials/<n>/checkpoint.pt
                                /final/plan.json, final/checkpoint.pt
                                /base/weights.pt     the base run's final weights (a run from --base-model)
                                /model/              exports, evaluation, drift_reference.npz, model.json (last)
                                /triton/, triton-cluster/
    predictions/<namespace>/<deployment>/<YYYY-MM-DD>/<HHMMSS>-<id>.jsonl   logged predictions, a batch per shard
    predictions/<namespace>/<deployment>/images/<sha256>                    a logged image (when images are logged)
    predictions/<namespace>/<deployment>/drift/latest.json                  the last drift check (autovision monitor)

A Dataset resource is stored under ``<namespace>/<name>``, so equal names in two
namespaces stay apart.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Final

DATASETS: Final = "datasets"
RUNS: Final = "runs"
PREDICTIONS: Final = "predictions"

# The files of a finished model directory (<run>/model/); model.json is written last.
MODEL_DIR: Final = "model"
MODEL_CARD: Final = "model.json"
ONNX_FILE: Final = "model.onnx"
TORCHSCRIPT_FILE: Final = "model.pt"
INT8_ONNX_FILE: Final = "model.int8.onnx"
# Edge formats (docs/edge.md): a file, a Core ML package directory, an ExecuTorch directory.
TFLITE_FILE: Final = "model.tflite"
TFLITE_INT8_FILE: Final = "model.int8.tflite"
COREML_PACKAGE: Final = "model.mlpackage"
EXECUTORCH_DIR: Final = "executorch"
EVALUATION_FILE: Final = "evaluation.json"
CONFUSION_MATRIX_FILE: Final = "confusion_matrix.csv"
REPORT_FILE: Final = "report.html"
TEST_PREDICTIONS_FILE: Final = "test_predictions.npz"
# What drift checks compare logged traffic with: the served ONNX model's top-1 and embeddings on the test split.
DRIFT_REFERENCE_FILE: Final = "drift_reference.npz"

# A run's Triton repositories: the local layout (Python backend) and the cluster's (ensemble, ONNX Runtime).
TRITON_LOCAL: Final = "triton"
TRITON_CLUSTER: Final = "triton-cluster"
STUDY_JOURNAL: Final = "study/journal.log"
FINAL_PLAN: Final = "final/plan.json"
BUDGET_PROBE: Final = "search/probe.pt"
FINAL_CHECKPOINT: Final = "final/checkpoint.pt"
BASE_WEIGHTS: Final = "base/weights.pt"
PROGRESS_FILE: Final = "progress.json"


def dataset_storage_name(namespace: str, name: str) -> str:
    """A Dataset resource's name in storage: scoped by its namespace."""
    return f"{namespace}/{name}"


def dataset_root(name: str) -> str:
    """Storage prefix of everything one dataset holds, every version included."""
    return f"{DATASETS}/{name}"


def dataset_prefix(name: str, version: str) -> str:
    """Storage prefix of one immutable dataset version."""
    return f"{dataset_root(name)}/{version}"


def manifest_key(name: str, version: str) -> str:
    """A format-1 version's manifest (one object per image): looked for only to say "import again"."""
    return f"{dataset_prefix(name, version)}/manifest.jsonl"


def index_key(name: str, version: str) -> str:
    """One dataset version's index, written last: the version is complete once it exists."""
    return f"{dataset_prefix(name, version)}/index.parquet"


def shards_prefix(name: str, version: str) -> str:
    """Storage prefix of a dataset version's shards."""
    return f"{dataset_prefix(name, version)}/shards"


def shard_key(name: str, version: str, number: int) -> str:
    """One shard of packed images of a dataset version."""
    return f"{shards_prefix(name, version)}/shard-{number:05d}.tar"


def report_key(name: str, version: str) -> str:
    """One dataset version's import report (read by the trainer and the operator)."""
    return f"{dataset_prefix(name, version)}/report.json"


def import_progress_key(name: str) -> str:
    """Where a running import reports its stage and progress (read by the operator)."""
    return f"{dataset_root(name)}/import-progress.json"


def import_slices_prefix(name: str, run: str) -> str:
    """Where a sliced import stages its slices (removed once their version is complete)."""
    return f"{dataset_root(name)}/import-slices/{run}"


def import_slice_shard_key(name: str, run: str, index: int, number: int) -> str:
    """One staged shard of one slice of a sliced import: copied into the version by the merge."""
    return f"{import_slices_prefix(name, run)}/slice-{index:03d}/shards/shard-{number:05d}.tar"


def import_slice_files_key(name: str, run: str, index: int) -> str:
    """One slice's table of files (where each packed image lies); written last: the slice is done once it exists."""
    return f"{import_slices_prefix(name, run)}/slice-{index:03d}/files.parquet"


def latest_key(name: str) -> str:
    """The pointer to a dataset's most recently imported version."""
    return f"{dataset_root(name)}/latest.json"


@dataclass(frozen=True)
class RunLocation:
    """Where one TrainingJob run lives: ``runs/<namespace>/<job>/<uid>`` (a re-created namesake has a new uid)."""

    namespace: str
    job: str
    uid: str

    @property
    def prefix(self) -> str:
        """The run's storage prefix."""
        return run_prefix(self.namespace, self.job, self.uid)


def run_prefix(namespace: str, job: str, uid: str) -> str:
    """Storage prefix of everything one TrainingJob run writes."""
    return f"{RUNS}/{namespace}/{job}/{uid}"


def progress_key(prefix: str) -> str:
    """A run's progress.json, under its run prefix."""
    return f"{prefix}/{PROGRESS_FILE}"


def study_journal_key(prefix: str) -> str:
    """A run's Optuna journal, under its run prefix."""
    return f"{prefix}/{STUDY_JOURNAL}"


def trial_checkpoint_key(prefix: str, number: int) -> str:
    """The checkpoint of one trial of a run's search."""
    return f"{prefix}/trials/{number}/checkpoint.pt"


def budget_probe_key(prefix: str) -> str:
    """The few steps that measure, before a search, what its cheapest model would cost."""
    return f"{prefix}/{BUDGET_PROBE}"


def final_plan_key(prefix: str) -> str:
    """The final fit's decision (which trial, whether to retrain), written before it starts."""
    return f"{prefix}/{FINAL_PLAN}"


def final_checkpoint_key(prefix: str) -> str:
    """The final fit's checkpoint."""
    return f"{prefix}/{FINAL_CHECKPOINT}"


def base_weights_key(prefix: str) -> str:
    """The weights a run continues from (its base run's final weights, copied into the run once)."""
    return f"{prefix}/{BASE_WEIGHTS}"


def model_dir_key(prefix: str) -> str:
    """A run's finished model directory."""
    return f"{prefix}/{MODEL_DIR}"


def model_card_key(prefix: str) -> str:
    """A run's model card, the last file a run writes."""
    return f"{model_dir_key(prefix)}/{MODEL_CARD}"


def model_file_key(model_dir: str, filename: str) -> str:
    """One file of a model directory (``model_dir`` may be empty: the directory is the root)."""
    return posixpath.join(model_dir, filename) if model_dir else filename


def triton_key(prefix: str, layout: str) -> str:
    """One of a run's Triton repositories (``TRITON_LOCAL`` or ``TRITON_CLUSTER``)."""
    return f"{prefix}/{layout}"


def prediction_log_prefix(namespace: str, deployment: str) -> str:
    """Where a ModelDeployment's gateway logs its sampled predictions (shards and images)."""
    return f"{PREDICTIONS}/{namespace}/{deployment}"


def prediction_day_prefix(prefix: str, day: str) -> str:
    """The shards of one UTC day (YYYY-MM-DD) of a prediction log: what a window's reader lists."""
    return f"{prefix}/{day}"


def prediction_shard_key(prefix: str, day: str, name: str) -> str:
    """One shard of logged predictions: ``day`` is YYYY-MM-DD (UTC), ``name`` HHMMSS-<id>.jsonl."""
    return f"{prediction_day_prefix(prefix, day)}/{name}"


def logged_image_key(prefix: str, sha256: str) -> str:
    """A logged image, stored once by its content's sha256."""
    return f"{prefix}/images/{sha256}"


def drift_report_key(prefix: str) -> str:
    """The last drift check of a deployment's logged predictions (``prefix``: its prediction log prefix),
    replaced whole by each check; the operator reads it."""
    return f"{prefix}/drift/latest.json"

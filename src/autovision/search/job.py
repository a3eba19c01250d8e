"""A search's settings and job: what every worker needs, and the images it trains on.

``SearchSettings`` says how to search (what to optimise for, when to stop early,
how many workers on how many nodes); ``SearchJob`` adds the dataset version's
records, the space and the budget, and is picklable so that worker processes
can be spawned with it; ``search_space`` is the space a run searches.
``ImageCache`` decodes each split once per resolution a trial asks for and keeps
it on the worker's device, or streams the training images from the shards when
decoded they would not fit the memory budget (``autovision.train.memory``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autovision.contract.trainer_args import CONNECT_TIMEOUT_SECONDS, RENDEZVOUS_TIMEOUT_SECONDS
from autovision.data.inspection import available_cores
from autovision.data.manifest import SPLITS, SplitName
from autovision.data.record_table import RecordTable
from autovision.preprocess import PreprocessConfig
from autovision.resources import Backbone, OptimizeFor, TrainingTarget
from autovision.search.budget import BudgetPlan
from autovision.search.space import Candidate, DatasetProfile, FixedSpace, Space, space_for
from autovision.search.study import RemoteStudy, StudyBackend, StudyStore
from autovision.settings import Settings
from autovision.storage import Storage
from autovision.train.images import ImageSet, TrainingImages, load_images
from autovision.train.memory import fits_cache, training_memory_budget
from autovision.train.models import UserBackboneConfig
from autovision.train.streaming import StreamedImages
from autovision.train.trainer import TrainConfig, metric_name

# Worker numbers are node * WORKERS_PER_NODE + the worker's number on its node (its GPU).
WORKERS_PER_NODE = 100


@dataclass(frozen=True)
class SearchSettings:
    """How to search: what to optimise for, when to stop early, how many workers, which seed.

    ``target`` Edge measures each trial's latency as a phone app would see it
    (``autovision.search.trial_latency``: its ``.tflite`` file in the LiteRT
    interpreter on one CPU thread) instead of PyTorch's on the worker's device.

    Early stopping ends the search once ``patience`` finished trials in a row
    failed to beat the best before them by ``min_delta``. ``space`` replaces the
    dataset's default search space; ``work_dir`` holds the study journal's local
    copy when storage is an object store. ``workers`` counts one node's workers;
    with ``nodes`` > 1 this process is node ``node`` of them and ``coordinator``
    (HOST:PORT) is where node 0 serves the study. ``final_processes`` > 1 runs
    the final fit data-parallel on that many local processes
    (``autovision.train.distributed``); with several nodes and a
    ``rendezvous`` (HOST:PORT on node 0) every node's processes join that fit,
    waiting at most ``rendezvous_timeout`` seconds for one another.
    """

    optimize_for: OptimizeFor = OptimizeFor.BALANCED
    target: TrainingTarget = TrainingTarget.CLOUD
    early_stopping: bool = True
    patience: int = 6
    min_delta: float = 0.001
    max_trials: int | None = None
    workers: int = 1
    seed: int = 0
    space: Space | None = None
    work_dir: Path | None = None
    node: int = 0
    nodes: int = 1
    coordinator: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS
    final_processes: int = 1
    rendezvous: str | None = None
    rendezvous_timeout: float = RENDEZVOUS_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if self.final_processes < 1:
            raise ValueError(f"the final fit needs at least one process, not {self.final_processes}")
        if not 0 <= self.node < self.nodes:
            raise ValueError(f"node {self.node} is not one of the {self.nodes} nodes")
        if self.nodes > 1 and self.coordinator is None:
            raise ValueError("a search over several nodes needs the coordinator's HOST:PORT")
        if not 1 <= self.workers <= WORKERS_PER_NODE:
            raise ValueError(f"workers per node must be 1 to {WORKERS_PER_NODE}, not {self.workers}")

    @property
    def is_member_node(self) -> bool:
        """Whether these are the settings of a node other than node 0."""
        return self.node > 0

    @property
    def final_fit_on_all_nodes(self) -> bool:
        """Whether every node takes part in the final fit (else node 0 fits alone and the others stop)."""
        return self.nodes > 1 and self.rendezvous is not None


@dataclass(frozen=True)
class SearchJob:
    """Everything a search worker needs, picklable so that worker processes can be spawned with it."""

    storage_root: str
    storage_settings: Settings
    prefix: str
    records: RecordTable
    labels: tuple[str, ...]
    multi_label: bool
    space: Space
    budget_milli_node_hours: int | None
    settings: SearchSettings = field(default_factory=SearchSettings)

    def storage(self) -> Storage:
        """A storage client for this process."""
        return Storage(self.storage_root, self.storage_settings)

    @property
    def plan(self) -> BudgetPlan:
        """The budget's split between search and final fit."""
        return BudgetPlan.of(self.budget_milli_node_hours)

    @property
    def metric(self) -> str:
        """The validation metric trials are compared by."""
        return metric_name(self.multi_label)

    def study_store(self, storage: Storage) -> StudyStore:
        """The run's study journal, kept by node 0 (or the only node)."""
        return StudyStore(storage, self.prefix, self.settings.work_dir)

    def study_backend(self, storage: Storage) -> StudyBackend:
        """The study as this node's workers reach it: the journal, or node 0's server over gRPC."""
        if self.settings.is_member_node:
            assert self.settings.coordinator is not None
            return RemoteStudy(self.settings.coordinator, self.settings.connect_timeout)
        return self.study_store(storage)

    @property
    def trial_cap(self) -> int | None:
        """The tighter of the settings' and the space's caps on the number of trials."""
        caps = [cap for cap in (self.settings.max_trials, self.space.max_trials) if cap is not None]
        return min(caps) if caps else None


class ImageCache:
    """Each split decoded once per resolution a trial asks for, kept on the worker's device; or, for training
    images too large for the memory budget, a stream of them."""

    def __init__(self, records: RecordTable, labels: tuple[str, ...], storage: Storage) -> None:
        self.labels = list(labels)
        self.storage = storage
        self.device = torch.device("cpu")
        self.decode_workers: int | None = None  # None: one per core
        self._version = records  # the job's table: no copy
        self._records = {split: records.where_split(split) for split in SPLITS}
        self._sets: dict[tuple[SplitName, int], ImageSet] = {}

    def on(self, device: torch.device, decode_workers: int | None = None) -> ImageCache:
        """Keep the cached images on this device from now on, decoding new ones on ``decode_workers`` processes."""
        self.device = device
        self.decode_workers = decode_workers
        self._sets = {key: images.to(device) for key, images in self._sets.items()}
        return self

    def split(self, split: SplitName, size: int) -> ImageSet:
        """One split at one resolution, decoded on first use."""
        if (split, size) not in self._sets:
            loaded = load_images(self._records[split], self.labels, size, self.storage, self.decode_workers)
            self._sets[(split, size)] = loaded.to(self.device)
        return self._sets[(split, size)]

    def training(self, splits: tuple[SplitName, ...], size: int) -> TrainingImages:
        """The images a trial trains on (a split, or train + validation for the final fit): from the cache when
        decoded they fit the memory budget, else streamed from the shards every epoch."""
        count = sum(self.count(split) for split in splits)
        if fits_cache(count, size, training_memory_budget(self.storage.settings)):
            return functools.reduce(ImageSet.concat, (self.split(split, size) for split in splits))
        workers = self.decode_workers or available_cores()
        records = self._version.where_split(*splits)
        return StreamedImages(records, tuple(self.labels), size, self.storage.settings, workers, self.device)

    def count(self, split: SplitName) -> int:
        """Images in a split."""
        return len(self._records[split])

    def sample(self, split: SplitName, size: int, count: int) -> ImageSet:
        """The first ``count`` images of a split, decoded now on this core and not kept (to measure what decoding
        an image costs, without the start-up of decoding processes)."""
        return load_images(self._records[split][:count], self.labels, size, self.storage, workers=1)


def search_space(
    profile: DatasetProfile,
    *,
    config: TrainConfig | None,
    preprocess: PreprocessConfig | None,
    budget_milli_node_hours: int | None,
    settings: SearchSettings,
    backbones: Sequence[Backbone] = (),
) -> Space:
    """What the run trains: the settings' space; one configuration when it is given or there is no budget
    (the default one then); otherwise the dataset's search space, the user's backbones included."""
    if settings.space is not None:
        return settings.space
    if config is not None or budget_milli_node_hours is None:
        return FixedSpace(Candidate(config or TrainConfig(), preprocess or PreprocessConfig()))
    users = [UserBackboneConfig(backbone.name, backbone.architecture, backbone.weights_uri) for backbone in backbones]
    return space_for(profile, seed=settings.seed, preprocess=preprocess, backbones=users)

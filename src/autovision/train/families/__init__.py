"""The registry of model families: the search space, ``build_model`` and checkpoint restore iterate it.

Each family lives in a module of its own behind ``ModelFamily`` (``base``),
the way Optuna keeps one sampler per module behind ``BaseSampler``: the
residual CNN (``residual_cnn``), EfficientNet-Lite (``efficientnet_lite``) and
the user's backbones (``user_backbone``) are registered here on import. A new
family is a subclass and one ``register_family`` call; nothing else branches on
family names.

Registration order matters once: ``space_for`` offers families in that order,
and a dataset's space warm-starts its first family (Lite for larger images, the
CNN for small ones; user backbones come last).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from autovision.train.families.base import ArchitectureConfig, ModelFamily
from autovision.train.families.efficientnet_lite import EfficientNetLiteFamily
from autovision.train.families.residual_cnn import ResidualCNNFamily
from autovision.train.families.user_backbone import UserBackboneFamily

if TYPE_CHECKING:
    from autovision.search.space import SearchSpace

F = TypeVar("F", bound=ModelFamily[Any])

_FAMILIES: dict[str, ModelFamily[Any]] = {}


def register_family(family: F) -> F:
    """Make a family available to the search space, the model builder and checkpoint restore."""
    if family.name in _FAMILIES:
        raise ValueError(f"a model family named {family.name!r} is registered already")
    _FAMILIES[family.name] = family
    return family


def unregister_family(family: ModelFamily[Any]) -> None:
    """Withdraw a registered family (a test's or a plugin's), so that nothing finds it any more."""
    if _FAMILIES.get(family.name) is not family:
        raise KeyError(f"the model family {family.name!r} is not registered")
    del _FAMILIES[family.name]


@contextmanager
def registered(family: F) -> Iterator[F]:
    """A family registered for the duration of a ``with`` block: how tests add a family of their own."""
    register_family(family)
    try:
        yield family
    finally:
        unregister_family(family)


def families() -> tuple[ModelFamily[Any], ...]:
    """Every registered family, in registration order."""
    return tuple(_FAMILIES.values())


def family_named(choice: str, space: SearchSpace) -> ModelFamily[Any]:
    """The family a trial's family name stands for in ``space`` (e.g. efficientnet_lite1, or a backbone's name)."""
    for family in _FAMILIES.values():
        if family.serves(choice, space):
            return family
    raise ValueError(f"no registered model family serves {choice!r}: registered are {', '.join(_FAMILIES)}")


def family_describing(description: Mapping[str, object]) -> ModelFamily[Any]:
    """The family of a model card's architecture (its ``describe()`` data): how a reader of a run's files, such
    as the explainer, finds which layer Grad-CAM uses."""
    for family in _FAMILIES.values():
        if family.describes(description):
            return family
    raise ValueError(f"no registered model family describes the architecture {dict(description)}")


def family_of(architecture: ArchitectureConfig) -> ModelFamily[Any]:
    """The family that builds an architecture, found by its configuration class."""
    for family in _FAMILIES.values():
        if isinstance(architecture, family.config_type):
            return family
    raise ValueError(f"no registered model family builds {type(architecture).__name__}")


register_family(EfficientNetLiteFamily())
register_family(ResidualCNNFamily())
register_family(UserBackboneFamily())

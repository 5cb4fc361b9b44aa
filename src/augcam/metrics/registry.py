"""Every metric of augcam in one registry: what it compares, how readers call it, which way is better.

A metric is one `MetricSpec` in `METRICS`, registered with `@register_metric`. Its kind says
what the implementation takes (each returns one float64 value per image, a Tensor[N]):

* ``map_pair``  — ``fn(base (N, P), other (N, P))``: two models' maps of the same images
  (MAD, Pearson, …); the study compares every augmented model's CAMs with the baseline's.
* ``single_map`` — ``fn(maps (N, P))``: one model's maps (entropy); a study reports it for the
  compared model (column ``name``) and for the baseline (column ``name_base``).
* ``masks`` — ``fn(maps (N, H, W), masks (N, H, W) bool)``: a map against a ground-truth mask
  (localisation stage).
* ``class_probabilities`` — ``fn(p_base (N, K), p_other (N, K), *, eps)``: two models' softmax
  outputs, float64; ``eps`` is the study's ``metrics.kld_eps`` (the guard inside the log).

``higher_is_better`` is the direction, as torchmetrics spells it: for a comparison, whether a
higher value means a map closer to the baseline's (Pearson: True, MAD: False). ``opt_in``
metrics are computed only when a study lists them (``metrics.saliency``), so that registering
them adds no column to existing studies. A ``parametrised`` metric is a family with one column
per parameter, ``<name>_<value>`` (``overlap_20``), and a display name with ``{}`` for the value.

The tables, figures and report name a column through `column_display_name` and orient it
through `column_higher_is_better`, so a metric registered from Python reaches all of them::

    @register_metric("max_abs_diff", kind="map_pair", display_name="max |Δ|", higher_is_better=False)
    def max_abs_diff(base, other):          # (N, P) float64 → (N,)
        return (base - other).abs().amax(dim=1)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from augcam.registry import Registry

__all__ = [
    "KINDS",
    "METRICS",
    "MetricSpec",
    "register_metric",
    "enable_metric",
    "computed_by_default",
    "metrics_of_kind",
    "column_spec",
    "column_display_name",
    "column_higher_is_better",
]

KINDS = ("map_pair", "single_map", "masks", "class_probabilities")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str
    display_name: str
    higher_is_better: bool
    fn: Callable
    opt_in: bool = False
    parametrised: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.display_name, str) or not self.display_name:
            raise ValueError(f"metric {self.name!r}: display_name must be a non-empty string")
        if not isinstance(self.higher_is_better, bool):
            raise ValueError(
                f"metric {self.name!r}: higher_is_better must be True or False, got {self.higher_is_better!r}"
            )
        if not callable(self.fn):
            raise ValueError(f"metric {self.name!r}: the implementation must be callable")
        if self.parametrised and "{}" not in self.display_name:
            raise ValueError(
                f"metric {self.name!r} is parametrised: its display_name needs a '{{}}' where the parameter goes"
            )

    def column_display_name(self, column: str) -> str | None:
        """How a reader knows `column` when it is one of this metric's columns, else None."""
        if self.parametrised:
            # The parameter as the column writes it (`overlap_key`: 20 → "20", 7.5 → "7.5").
            value = re.fullmatch(rf"{re.escape(self.name)}_(\d+(?:\.\d+)?)", column)
            return self.display_name.format(value.group(1)) if value else None
        if self.kind == "single_map":
            if column == self.name:
                return f"{self.display_name} (model)"
            if column == f"{self.name}_base":
                return f"{self.display_name} (baseline)"
            return None
        return self.display_name if column == self.name else None


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(
    name: str, *, kind: str, display_name: str, higher_is_better: bool, opt_in: bool = False, parametrised: bool = False
) -> Callable[[Callable], Callable]:
    """Decorator registering the implementation `fn` as metric `name` (see the module docstring
    for what each kind's `fn` takes); returns `fn` unchanged."""

    def decorator(fn: Callable) -> Callable:
        spec = MetricSpec(name, kind, display_name, higher_is_better, fn, opt_in=opt_in, parametrised=parametrised)
        METRICS.register(name)(spec)
        return fn

    return decorator


# Opt-in metrics that this process computes as if they were not opt-in (`enable_metric`).
_ENABLED: set[str] = set()


def enable_metric(name: str, enabled: bool = True) -> None:
    """Have every study of this process compute the opt-in metric `name` (or stop, with
    ``enabled=False``) as if it were a default one."""
    METRICS.lookup(name, "enable_metric")
    if enabled:
        _ENABLED.add(name)
    else:
        _ENABLED.discard(name)


def computed_by_default(spec: MetricSpec) -> bool:
    """Whether a study computes `spec` without listing it: not opt-in, or enabled."""
    return not spec.opt_in or spec.name in _ENABLED


class MetricView(Mapping[str, Callable]):
    """The implementations of the registered metrics that `select` accepts, by name, in
    registration order; a live view of `METRICS` (read-only: register through `METRICS`)."""

    def __init__(self, label: str, select: Callable[[MetricSpec], bool]):
        self.label = label
        self._select = select

    def _specs(self) -> list[MetricSpec]:
        return [spec for spec in METRICS.values() if self._select(spec)]

    def __getitem__(self, name: str) -> Callable:
        spec = METRICS.get(name)
        if spec is None or not self._select(spec):
            raise KeyError(name)
        return spec.fn

    def __iter__(self) -> Iterator[str]:
        return iter([spec.name for spec in self._specs()])

    def __len__(self) -> int:
        return len(self._specs())

    def lookup(self, name: str, where: str = "") -> Callable:
        """The implementation called `name`, or a ConfigError that lists the valid names."""
        known: Registry[Callable] = Registry(self.label)
        known.update(self)
        return known.lookup(name, where)

    def __repr__(self) -> str:
        return f"MetricView({self.label!r}, {list(self)})"


def metrics_of_kind(kind: str, *, opt_in: bool | None = None) -> list[MetricSpec]:
    """The registered specs of `kind` in registration order (only those with that `opt_in` when given)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return [spec for spec in METRICS.values() if spec.kind == kind and (opt_in is None or spec.opt_in == opt_in)]


def column_spec(column: str) -> MetricSpec | None:
    """The registered metric a table column holds (``overlap_20`` → overlap, ``entropy_base`` →
    entropy), or None for any other column."""
    spec = METRICS.get(column)
    if spec is not None and spec.column_display_name(column) is not None:
        return spec
    for spec in METRICS.values():
        if spec.column_display_name(column) is not None:
            return spec
    return None


def column_display_name(column: str) -> str | None:
    """The name a reader knows a metric column by (``overlap_20`` → ``Overlap Rate@20%``), or
    None when no registered metric writes that column."""
    spec = column_spec(column)
    return None if spec is None else spec.column_display_name(column)


def column_higher_is_better(column: str) -> bool | None:
    """The direction of the metric a column holds, or None when no registered metric writes it."""
    spec = column_spec(column)
    return None if spec is None else spec.higher_is_better

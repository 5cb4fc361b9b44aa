"""The plan of a study: the baseline, one model per (augmentation, seed), the controls, and the key
that names each model by everything that determines its weights.

`model_id` is `<augmentation>-s<seed>-<hash>`, the hash covering the model key, so a study that
gains an augmentation or a seed reuses every model it already has, and a change of anything that
changes the weights (data, architecture, recipe, training code) trains the model again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from augcam.config import AugmentationConfig, GuidedConfig, StudyConfig, digest
from augcam.models import file_sha256, model_spec
from augcam.rundir import BASELINE, model_id
from augcam.training import uses_targets

# Bump when a change to training code (augcam.training, an augmentation, a model builder) changes the
# weights it produces: every model id changes, so cached models are retrained instead of reused.
TRAINING_CODE_VERSION = 1


@dataclass(frozen=True)
class ModelRun:
    """One model of the plan: the baseline (entry None), augmentation `entry` with `seed`, or a
    control without augmentation: a baseline `replica` trained with another init or ordering seed
    (the noise floor), or the baseline trained on permuted labels (the data-randomisation check)."""

    model_id: str
    augmentation: str
    seed: int | None
    entry: AugmentationConfig | None = None
    init_seed: int = 0
    ordering_seed: int = 0
    replica: str | None = None  # "ordering+1", "init+1", …
    permuted_labels: bool = False
    guided: GuidedConfig | None = None  # a mask-guided intervention (then entry is None)

    @property
    def is_baseline(self) -> bool:
        """The baseline itself (not a replica nor the permuted-labels control)."""
        return self.entry is None and self.guided is None and self.replica is None and not self.permuted_labels

    @property
    def is_intervention(self) -> bool:
        """An augmented or mask-guided model: one the compare stages compare with the baseline."""
        return self.entry is not None or self.guided is not None

    @property
    def label(self) -> str:
        """How messages name the model: `baseline`, `affine seed 1`, `baseline replica init+1`."""
        if self.replica is not None:
            return f"{BASELINE} replica {self.replica}"
        if self.permuted_labels:
            return f"{BASELINE} on permuted labels"
        return self.augmentation if self.is_baseline and self.seed is None else f"{self.augmentation} seed {self.seed}"


def model_key(
    config: StudyConfig,
    data_fingerprint: str,
    entry: AugmentationConfig | None,
    seed: int | None,
    *,
    init_seed: int | None = None,
    ordering_seed: int | None = None,
    permuted_labels: bool = False,
    guided: GuidedConfig | None = None,
) -> dict[str, Any]:
    """Everything that determines a model's trained weights, and nothing else.

    Not in the key, on purpose: analysis settings (model.target_layer, cam, metrics), the device
    and library versions (recorded in meta.json and the manifest; see docs/reliability.md).
    eval_batch_size is in: validation accuracy picks the best epoch, and batched evaluation can
    round differently.
    """
    t = config.training
    key: dict[str, Any] = {
        "training_code": TRAINING_CODE_VERSION,
        "data": {"fingerprint": data_fingerprint, "image_size": config.data.image_size},
        "model": config.model.name,
        "training": {
            "epochs": t.epochs,
            "batch_size": t.batch_size,
            "lr": t.lr,
            "weight_decay": t.weight_decay,
            "init_seed": t.init_seed if init_seed is None else init_seed,
            "ordering_seed": t.ordering_seed if ordering_seed is None else ordering_seed,
            "eval_batch_size": t.eval_batch_size,
        },
        "augmentation": None,
    }
    if config.model.params:  # only when set, so that existing model ids do not change
        key["model_params"] = config.model.params
    if config.model.weights is not None:  # likewise; the file's content, wherever it lies
        key["model_weights"] = file_sha256(config.model.weights)
    if t.steps_per_epoch is not None:  # only when set, so that existing model ids do not change
        key["training"]["steps_per_epoch"] = t.steps_per_epoch
    if t.order != "per_epoch":  # only when set, so that existing model ids do not change
        key["training"]["order"] = t.order
    if t.recipe():  # only when set: the reference loop's ids stay what they were
        key["training"]["recipe"] = t.recipe()
    if t.base_augmentations:  # likewise
        key["training"]["base_augmentations"] = [
            {"name": base.name, "params": base.resolved_params()} for base in t.base_augmentations
        ]
    if permuted_labels:
        key["permuted_labels"] = True
    if entry is not None:
        key["augmentation"] = {"name": entry.name, "params": entry.resolved_params(), "copies": t.copies, "seed": seed}
        if t.copies_drawn != "per_epoch":  # likewise; a model without copies trains the same either way
            key["augmentation"]["copies_drawn"] = t.copies_drawn
        if uses_targets(entry.build()):
            # Trained on probability targets: not the weights an earlier augcam gave the same entry
            # with the original labels.
            key["augmentation"]["targets"] = "mixed"
    if guided is not None:  # absent otherwise, so the ids of models without a guided loss stay as they were
        key["guided"] = {
            "loss": guided.loss,
            "weight": guided.weight,
            "ce_weight": guided.ce_weight,
            "feature_layer": guided_feature_layer(config, guided),
            "seed": seed,
        }
    return key


def guided_feature_layer(config: StudyConfig, guided: GuidedConfig) -> str | None:
    """actdiff's feature module: the configured one, else the model's declared classifier (None:
    augcam.training.guided's default, the last nn.Linear)."""
    if guided.feature_layer is not None:
        return guided.feature_layer
    head = model_spec(config.model.name).head
    return head.classifier if head is not None else None


def guided_runs(config: StudyConfig, data_fingerprint: str) -> list[ModelRun]:
    """One model per (guided entry, seed). Seed s shifts the data order by s (seed 0 = exactly the
    baseline's init and order, so the loss is the only difference) and seeds the loss's own
    randomness; the deterministic losses would otherwise train the same model for every seed."""
    t = config.training
    runs = []
    for entry in config.guided:
        for seed in config.seeds:
            ordering_seed = t.ordering_seed + seed
            key = digest(model_key(config, data_fingerprint, None, seed, ordering_seed=ordering_seed, guided=entry))
            runs.append(
                ModelRun(
                    model_id(entry.loss, seed, key),
                    entry.display,
                    seed,
                    None,
                    init_seed=t.init_seed,
                    ordering_seed=ordering_seed,
                    guided=entry,
                )
            )
    return runs


def plan(config: StudyConfig, data_fingerprint: str) -> list[ModelRun]:
    """The baseline first, then one model per (augmentation, seed), then the identity control's
    null models (one per seed of `config.seeds_of`)."""
    t = config.training
    seeds = {"init_seed": t.init_seed, "ordering_seed": t.ordering_seed}
    base_key = digest(model_key(config, data_fingerprint, None, None))
    runs = [ModelRun(model_id(BASELINE, None, base_key), BASELINE, None, **seeds)]
    for entry in config.study_augmentations:
        for seed in config.seeds_of(entry):
            key = digest(model_key(config, data_fingerprint, entry, seed))
            runs.append(ModelRun(model_id(entry.name, seed, key), entry.display, seed, entry, **seeds))
    return runs + guided_runs(config, data_fingerprint)


def plan_controls(config: StudyConfig, data_fingerprint: str) -> list[ModelRun]:
    """Baselines that differ from the baseline by randomness alone: replica i (1-based) changes the
    ordering seed when i is odd and the init seed when i is even, by ceil(i / 2), so the noise floor
    covers both sources the literature names; then, if asked, the baseline on permuted labels."""
    t = config.training
    runs = []
    for i in range(1, config.controls.baseline_replicas + 1):
        shift = (i + 1) // 2
        init_seed, ordering_seed = (
            (t.init_seed, t.ordering_seed + shift) if i % 2 else (t.init_seed + shift, t.ordering_seed)
        )
        replica = f"ordering+{shift}" if i % 2 else f"init+{shift}"
        key = digest(model_key(config, data_fingerprint, None, None, init_seed=init_seed, ordering_seed=ordering_seed))
        runs.append(
            ModelRun(
                model_id(f"{BASELINE}-{replica.replace('+', '')}", None, key),
                BASELINE,
                None,
                init_seed=init_seed,
                ordering_seed=ordering_seed,
                replica=replica,
            )
        )
    if config.controls.data_randomization:
        key = digest(model_key(config, data_fingerprint, None, None, permuted_labels=True))
        runs.append(
            ModelRun(
                model_id(f"{BASELINE}-permuted", None, key),
                BASELINE,
                None,
                init_seed=t.init_seed,
                ordering_seed=t.ordering_seed,
                permuted_labels=True,
            )
        )
    return runs

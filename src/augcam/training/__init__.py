"""Training one model of a study.

- `loop`: the training loop (`train_model`), its inputs (`TrainingData`, `TrainSettings`) and result.
- `batches`: the images a batch feeds the model (copies redrawn per epoch or made once), shared by
  the loop and the augmentation gallery.
- `ordering`: which images each batch reads and which random stream each model draws from, the
  rules that make the models of a study comparable.
- `recipe`: the registries of optimizers, learning-rate schedules and precisions.
- `state`: the training state a run resumes from, and its checkpoint file.
- `guided`: the mask-guided losses a model may train with besides the cross-entropy.
"""

from augcam.training.batches import BatchMaker, FixedCopies, batch_maker, fixed_copies, uses_targets
from augcam.training.guided import GUIDED_LOSSES, GuidedTraining, guided_loss, register_guided_loss
from augcam.training.loop import (
    TrainingData,
    TrainingDiverged,
    TrainResult,
    TrainSettings,
    evaluate_predictions,
    prepare_inputs,
    train_model,
)
from augcam.training.ordering import (
    ORDERS,
    augmentation_generator,
    base_augment,
    derived_seed,
    epoch_order,
    epoch_positions,
    fixed_copies_generator,
    guided_generator,
)
from augcam.training.recipe import OPTIMIZERS, PRECISIONS, SCHEDULES, make_optimizer, precision_context, scheduled_lr
from augcam.training.state import (
    TrainState,
    load_train_state,
    save_train_state,
    state_digest,
    train_state_from_bytes,
    train_state_to_bytes,
)

__all__ = [
    "TrainingData",
    "TrainSettings",
    "TrainResult",
    "TrainingDiverged",
    "train_model",
    "evaluate_predictions",
    "prepare_inputs",
    "uses_targets",
    "BatchMaker",
    "FixedCopies",
    "batch_maker",
    "fixed_copies",
    "ORDERS",
    "fixed_copies_generator",
    "derived_seed",
    "epoch_order",
    "epoch_positions",
    "augmentation_generator",
    "guided_generator",
    "base_augment",
    "OPTIMIZERS",
    "SCHEDULES",
    "PRECISIONS",
    "make_optimizer",
    "scheduled_lr",
    "precision_context",
    "TrainState",
    "save_train_state",
    "load_train_state",
    "train_state_to_bytes",
    "train_state_from_bytes",
    "state_digest",
    "GUIDED_LOSSES",
    "GuidedTraining",
    "guided_loss",
    "register_guided_loss",
]

"""The base of every section of a study file: unknown keys are errors, values are frozen, and a
YAML boolean is never taken for a number."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from augcam.config.checks import int64


class Section(BaseModel):
    # allow_inf_nan=False: `lr: .inf` or `kld_eps: .nan` would pass every `gt`/`ge` bound otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads `yes`/`no`/`true` as booleans and pydantic would quietly take them as 1 and 0.
        if isinstance(value, bool):
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in get_args(annotation):
                raise ValueError(f"expected a value of type {_type_name(annotation)}, got the boolean {value}")
        return int64(value)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")

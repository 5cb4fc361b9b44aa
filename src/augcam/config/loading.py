"""Loading a study: one YAML file, a preset name or a dict → a validated `StudyConfig`, with
errors that name the file and the field. The resolved config (every default filled in) is
written to the run directory as `study.yaml`.
"""

from __future__ import annotations

import copy
import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from augcam.config.checks import check_device_name
from augcam.config.study_config import StudyConfig
from augcam.errors import ConfigError


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("augcam.presets").iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    return resources.files("augcam.presets").joinpath(f"{name}.yaml").read_text()


def preset_summary(name: str) -> str:
    """The first line of the preset's description; an architecture selection's says so."""
    data = yaml.safe_load(preset_text(name))
    line = str(data.get("description", "")).strip().splitlines()[0]
    return f"(augcam select) {line}" if SELECTION_KEY in data else line


# The key that tells an architecture selection file (augcam.config.selection) from a study file.
SELECTION_KEY = "candidates"


def load_config(source: str | Path | dict, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """A validated StudyConfig from a preset name, a YAML file, or a dict.

    Errors (unreadable file, YAML syntax, unknown keys, wrong values) raise one ConfigError that
    names the file and the field.
    """
    data, origin = read_source(source, "study file")
    if SELECTION_KEY in data:
        raise ConfigError(
            f"{origin}: an architecture selection (it lists `{SELECTION_KEY}`), not a study; "
            "run it with `augcam select`"
        )
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_errors(err, origin)) from None
    except ConfigError as err:  # raised by a registry lookup inside a validator
        raise ConfigError(f"{origin}: {err}") from None


def is_selection(source: str | Path | dict) -> bool:
    """Whether `source` (a preset name, a YAML file or a dict) is an architecture selection
    (`augcam select`) rather than a study; a ConfigError if it cannot be read."""
    data, _ = read_source(source, "study or selection file")
    return SELECTION_KEY in data


def read_source(source: str | Path | dict, kind: str) -> tuple[dict, str]:
    """(the mapping, how errors name where it came from) of a preset name, a YAML file (`kind`:
    how messages call it) or a dict (copied, so that overrides leave the caller's alone)."""
    if isinstance(source, dict):
        return copy.deepcopy(source), "config"
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.exists():
        origin = str(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such {kind} (presets: {', '.join(preset_names())})") from None
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the {kind} ({err.strerror})") from None
    elif str(source) in preset_names():
        origin = f"preset {source!r}"
        text = preset_text(str(source))
    else:
        near = difflib.get_close_matches(str(source), preset_names(), n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"{source!r} is neither a {kind} nor a preset{hint} (presets: {', '.join(preset_names())})")
    return _parse_yaml(text, origin), origin


def with_device(config: StudyConfig, device: str) -> StudyConfig:
    """`config` with its device replaced (the `--device` option), validated again as a whole: the
    device must agree with the rest of the config (e.g. resources.gpus_per_model) as it must in
    the study file. Everything else stays equal (same config hash)."""
    try:
        check_device_name(device)
    except ValueError as err:
        raise ConfigError(f"--device: {err}") from None
    try:
        return StudyConfig.model_validate({**config.model_dump(), "device": device})
    except ValidationError as err:
        raise ConfigError(describe_errors(err, "--device")) from None


def _parse_yaml(text: str, origin: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{origin}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: a study file must be a mapping of keys (name, data, model, ...), got {type(data).__name__}"
        )
    return data


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` options → {dotted key: value}, each VALUE read as plain YAML (no tags);
    a ConfigError naming the option otherwise."""
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set training.epochs=2")
        key = key.strip()
        try:
            # A tag asks the YAML reader to build something other than plain data (`!!binary` bytes
            # that pydantic would take as a string, `!!python/object` that safe_load refuses).
            tag = next((token.value for token in yaml.scan(text) if isinstance(token, yaml.TagToken)), None)
            if tag is not None:
                raise ConfigError(f"--set {key}: YAML tags ({''.join(tag)}) are not accepted; give a plain value")
            overrides[key] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err)
            raise ConfigError(f"--set {key}: {text!r} is not a valid YAML value: {problem}") from None
    return overrides


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is not a section")
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        _merge(node[leaf], value)  # `--set training={epochs: 2}` is `--set training.epochs=2`
    else:
        node[leaf] = value


def _merge(into: dict, value: dict) -> None:
    for key, item in value.items():
        if isinstance(item, dict) and isinstance(into.get(key), dict):
            _merge(into[key], item)
        else:
            into[key] = item


def _fields_at(loc: tuple, root: Any) -> list[str]:
    """The valid keys of the section at `loc` (a pydantic error location without its last item)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        model = inner[0] if inner and isinstance(inner[0], type) else annotation
    return list(getattr(model, "model_fields", {}))


def describe_errors(err: ValidationError, origin: str, root: Any = StudyConfig) -> str:
    """One message for every problem pydantic found in a file validated as `root`, each naming its field."""
    lines = []
    for error in err.errors():
        loc = tuple(error["loc"])
        where = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        if error["type"] == "extra_forbidden":
            valid = _fields_at(loc[:-1], root)
            near = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            lines.append(f"{where}: unknown key{hint} (valid keys: {', '.join(valid)})")
        elif error["type"] == "missing":
            lines.append(f"{where}: required key is missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            shown = (
                f" (got {error['input']!r})"
                if error["type"] not in ("value_error", "assertion_error")
                and not isinstance(error.get("input"), (dict, list))
                else ""
            )
            lines.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    if len(lines) == 1:
        return f"{origin}: {lines[0]}"
    return f"{origin}: {len(lines)} problems:\n" + "\n".join(f"  - {line}" for line in lines)

"""augcam: how does a data augmentation change where an image classifier looks?

Python API (the `augcam` command is a thin layer over it and uses nothing else):

    from augcam import load_config, run_study
    result = run_study("quick", "runs/quick")      # a preset name, a YAML path, a dict or a StudyConfig
    result.metrics                                 # one row per (augmented model, test image)
    chosen = augcam.select("quick-selection", "runs/select").chosen   # architecture selection

    augcam.cams.gradcam(model, target_layer, images, targets=None)   # -> Tensor[N, H, W]
    augcam.metrics.compare_maps(base, other)                         # -> dict[str, Tensor[N]]
    augcam.metrics.class_kld(p_base, p_aug)                          # -> Tensor[N]

docs/design.md maps the package: the pipeline's stages, its executors and its registries.
"""

__version__ = "0.1.0"

# Imported lazily (module → names), so that `import augcam` stays cheap and `augcam --help` fast.
_EXPORTS = {
    "augcam.config": (
        "load_config",
        "load_selection",
        "is_selection",
        "parse_overrides",
        "StudyConfig",
        "SelectionConfig",
        "preset_names",
        "preset_summary",
    ),
    "augcam.errors": ("AugcamError", "ConfigError", "DataError"),
    "augcam.pipeline": (
        "run_study",
        "prepare",
        "PreparedStudy",
        "StudyResult",
        "summary_tables",
        "study_design_limits",
    ),
    "augcam.pipeline.executors": ("EXECUTORS", "executor_class"),
    "augcam.pipeline.gallery": ("augmentation_gallery", "write_gallery", "AugmentationGallery"),
    "augcam.analysis": ("write_report", "load_run"),
    "augcam.selection": ("select", "prepare_selection", "SelectionResult"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *_MODULE_OF]


def __getattr__(name: str):
    if name in _MODULE_OF:
        import importlib

        return getattr(importlib.import_module(_MODULE_OF[name]), name)
    raise AttributeError(f"module 'augcam' has no attribute {name!r}")

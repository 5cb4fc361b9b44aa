"""augcam: how does a data augmentation change where an image classifier looks?

Python API (the `augcam` command is a thin layer over it):

    from augcam import load_config, run_study
    result = run_study("quick", "runs/quick")      # a preset name, a YAML path, a dict or a StudyConfig
    result.metrics                                 # one row per (augmented model, test image)

    augcam.cams.gradcam(model, target_layer, images, targets=None)   # -> Tensor[N, H, W]
    augcam.metrics.compare_maps(base, other)                         # -> dict[str, Tensor[N]]
    augcam.metrics.class_kld(p_base, p_aug)                          # -> Tensor[N]
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_config", "run_study", "prepare", "StudyConfig"]


def __getattr__(name: str):
    # Imported lazily so that `import augcam` stays cheap and submodules can import __version__.
    if name in ("load_config", "StudyConfig"):
        from augcam import config

        return getattr(config, name)
    if name in ("run_study", "prepare"):
        from augcam import study

        return getattr(study, name)
    raise AttributeError(f"module 'augcam' has no attribute {name!r}")

import pytest

from augcam.config import StudyConfig, is_selection, load_config, load_selection, preset_names
from augcam.config.loading import preset_text
from augcam.errors import ConfigError

MINIMAL = {"name": "t", "augmentations": ["affine"]}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_valid(name):
    if "timm:" in preset_text(name):  # timm is an optional dependency
        pytest.importorskip("timm")
    if is_selection(name):  # an architecture selection (tests/test_selection.py), whose study must be valid
        selection = load_selection(name)
        assert selection.name == name
        config = selection.study
        name = config.name
    else:
        config = load_config(name)
    assert config.name == name
    # a mask-guided preset (guided interventions only) lists no augmentation
    assert config.augmentations or config.guided
    if config.augmentations:
        assert config.resolved()["augmentations"][0]["params"] is not None


def test_required_presets_ship():
    assert {"quick", "fashion-mnist", "thesis-cifar10"} <= set(preset_names())


def test_thesis_preset_is_the_published_setup():
    c = load_config("thesis-cifar10")
    assert (c.data.dataset, c.data.val_fraction, c.data.image_size) == ("cifar10", 0.1, 224)
    assert c.model.name == "efficientnet_b0"
    t = c.training
    assert (t.lr, t.weight_decay, t.batch_size, t.epochs, t.copies) == (1e-3, 1e-5, 32, 30, 1)
    assert [a.name for a in c.augmentations] == [
        "affine",
        "cutmix",
        "color_jitter",
        "elastic",
        "equalization",
        "gaussian_blur",
        "random_crop",
    ]
    assert len(c.seeds) == 3 and c.cam.target == "predicted"


def test_short_and_long_augmentation_forms():
    c = load_config(
        {
            "name": "t",
            "augmentations": [
                "affine",
                {"name": "gaussian_blur", "kernel_size": 3},
                {"name": "gaussian_blur", "label": "blur7", "params": {"kernel_size": 7}},
            ],
        }
    )
    assert [a.display for a in c.augmentations] == ["affine", "gaussian_blur", "blur7"]
    assert c.augmentations[1].build().kernel_size == 3
    assert c.augmentations[2].build().kernel_size == 7


@pytest.mark.parametrize(
    "data,pattern",
    [
        ({**MINIMAL, "training": {"epocs": 3}}, r"training\.epocs: unknown key; did you mean 'epochs'\?"),
        ({**MINIMAL, "modle": {}}, r"modle: unknown key; did you mean 'model'\?"),
        ({**MINIMAL, "data": {"datset": "mnist"}}, r"data\.datset: unknown key; did you mean 'dataset'\?"),
        ({**MINIMAL, "training": {"epochs": -1}}, r"training\.epochs: Input should be greater than 0"),
        ({**MINIMAL, "training": {"epochs": "many"}}, r"training\.epochs: .*valid integer"),
        ({**MINIMAL, "metrics": {"overlap_percentages": [20, 0]}}, r"metrics\.overlap_percentages: .*\(0, 100\]"),
        ({**MINIMAL, "metrics": {"overlap_percentages": [120]}}, r"\(0, 100\], got 120"),
        ({"name": "t", "augmentations": []}, r"augmentations: List should have at least 1 item"),
        ({"name": "t", "augmentations": ["affine", "affine"]}, r"'affine' is listed more than once"),
        ({"name": "t", "augmentations": ["afine"]}, r"unknown augmentation 'afine'; did you mean 'affine'\?.*valid:"),
        ({"name": "t", "augmentations": [{"name": "affine", "degres": 3}]}, r"augmentations\[affine\].*'degres'"),
        ({**MINIMAL, "model": {"name": "resnet81"}}, r"model\.name: unknown model 'resnet81'; did you mean 'resnet18'"),
        ({**MINIMAL, "cam": {"method": "gradcan"}}, r"cam\.method: unknown CAM method 'gradcan'"),
        ({**MINIMAL, "cam": {"target": "truth"}}, r"cam\.target: Input should be 'predicted' or 'label'"),
        ({**MINIMAL, "seeds": [1, 1]}, r"seeds: .*distinct"),
        ({**MINIMAL, "device": "gpu"}, r"device: expected auto, cpu, cuda"),
        ({"augmentations": ["affine"]}, r"name: required key is missing"),
        # Issue #5's catalogue: values pydantic alone would let through, and ranges.
        ({**MINIMAL, "training": {"lr": float("inf")}}, r"training\.lr: Input should be a finite number"),
        ({**MINIMAL, "metrics": {"kld_eps": float("nan")}}, r"metrics\.kld_eps: Input should be a finite number"),
        ({**MINIMAL, "training": {"epochs": True}}, r"training\.epochs: expected a value of type int, got the boolean"),
        ({**MINIMAL, "training": {"copies": 0}}, r"training\.copies: Input should be greater than 0"),
        ({**MINIMAL, "training": {"weight_decay": -1e-5}}, r"training\.weight_decay: .*greater than or equal to 0"),
        ({**MINIMAL, "data": {"val_fraction": 1.5}}, r"data\.val_fraction: Input should be less than 1"),
        ({**MINIMAL, "data": {"train_size": 0}}, r"data\.train_size: Input should be greater than 0"),
        ({**MINIMAL, "metrics": {"overlap_percentages": []}}, r"metrics\.overlap_percentages: .*at least 1 item"),
        ({**MINIMAL, "metrics": {"overlap_percentages": [10, 10]}}, r"percentages must be distinct"),
        ({**MINIMAL, "seeds": []}, r"seeds: List should have at least 1 item"),
        ({**MINIMAL, "seeds": ["a"]}, r"seeds\[0\]: .*valid integer"),
        (
            {"name": "t", "augmentations": [{"name": "affine", "label": "x"}, {"name": "cutmix", "label": "x"}]},
            r"'x' is listed more than once",
        ),
        ({"name": "t", "augmentations": [{"name": "affine", "label": "baseline"}]}, r"'baseline' is reserved"),
        (
            {"name": "t", "augmentations": [{"name": "affine", "label": "a"}, {"name": "affine", "label": "b"}]},
            r"'a' and 'b' are the same augmentation \(affine\) with the same parameters",
        ),
        (
            {"name": "t", "augmentations": [{"name": "gaussian_blur", "sigma": "abc"}]},
            r"augmentations\[gaussian_blur\]\.sigma: .*'abc'",
        ),
        ({**MINIMAL, "device": "cuda:x"}, r"device: expected auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
        (
            {**MINIMAL, "cam": {"extra_methods": ["scorcam"]}},
            r"cam\.extra_methods: unknown CAM method 'scorcam'; did you mean",
        ),
        ({**MINIMAL, "cam": {"extra_methods": ["gradcam"]}}, r"cam: extra_methods repeats cam\.method 'gradcam'"),
        # Controls.
        (
            {"name": "t", "augmentations": ["affine", "identity"]},
            r"'identity' is the control that controls\.identity adds",
        ),
        (
            {**MINIMAL, "controls": {"baseline_replicas": -1}},
            r"controls\.baseline_replicas: .*greater than or equal to 0",
        ),
        (
            {**MINIMAL, "controls": {"sanity_imgs": 5}},
            r"controls\.sanity_imgs: unknown key; did you mean 'sanity_images'",
        ),
        ({**MINIMAL, "controls": {"identity": "often"}}, r"controls\.identity: Input should be a valid boolean"),
        ({**MINIMAL, "controls": {"null_models": -1}}, r"controls\.null_models: .*greater than or equal to 0"),
        ({**MINIMAL, "controls": {"null_noise_std": 0.01}}, r"controls\.null_noise_std: must be > 0 .* and < 0\.01"),
        ({**MINIMAL, "controls": {"null_noise_std": 0.0}}, r"controls\.null_noise_std: must be > 0 \(without noise"),
        (
            {"name": "t", "augmentations": [{"name": "identity", "noise_std": 0.02}], "controls": {"identity": False}},
            r"augmentations\[identity\]\.noise_std: must be >= 0 and < 0\.01",
        ),
        # Base augmentations (every model, the baseline included).
        (
            {**MINIMAL, "training": {"base_augmentations": ["cutmix"]}},
            r"training\.base_augmentations\[cutmix\]: cutmix mixes the images of a batch",
        ),
        (
            {**MINIMAL, "training": {"base_augmentations": ["flip"]}},
            r"training\.base_augmentations\[flip\]: unknown augmentation 'flip'",
        ),
        (
            {**MINIMAL, "training": {"base_augmentations": [{"name": "translate", "pixel": 2}]}},
            r"training\.base_augmentations\[translate\]: unknown parameter 'pixel'; did you mean 'pixels'",
        ),
        (
            {
                **MINIMAL,
                "training": {"base_augmentations": ["horizontal_flip"]},
                "guided": [{"loss": "rrr", "weight": 1.0}],
            },
            r"training\.base_augmentations: not with `guided` entries",
        ),
    ],
)
def test_bad_config_gives_one_clear_message(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(data)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: x\naugmentations: [affine\nseeds: [0]\n")
    with pytest.raises(ConfigError, match=r"study\.yaml:\d+:\d+: invalid YAML"):
        load_config(path)


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="no such study file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="neither a study file nor a preset; did you mean 'quick'"):
        load_config("quik")


def test_overrides_and_hash():
    a = load_config("quick")
    b = load_config("quick", overrides={"training.epochs": 7})
    assert b.training.epochs == 7
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == load_config("quick").config_hash()
    with pytest.raises(ConfigError, match="training.epocs: unknown key"):
        load_config("quick", overrides={"training.epocs": 7})


def test_resolved_config_round_trips():
    for c in (load_config("quick"), load_config("cifar10-fast")):
        again = StudyConfig.model_validate(c.resolved())
        assert again.config_hash() == c.config_hash()


def test_base_augmentations_are_resolved_when_set_and_absent_otherwise():
    plain = load_config("quick")
    assert plain.training.base_augmentations == [] and "base_augmentations" not in plain.resolved()["training"]
    based = load_config("quick", overrides={"training.base_augmentations": ["horizontal_flip", "translate"]})
    assert based.resolved()["training"]["base_augmentations"] == [
        {"name": "horizontal_flip", "label": "horizontal_flip", "params": {}},
        {"name": "translate", "label": "translate", "params": {"pixels": 2}},
    ]
    assert based.config_hash() != plain.config_hash()


def test_same_augmentation_with_other_parameters_under_two_labels_is_fine():
    c = load_config(
        {
            "name": "t",
            "augmentations": [{"name": "affine", "label": "a"}, {"name": "affine", "label": "b", "degrees": 5}],
        }
    )
    assert [a.display for a in c.augmentations] == ["a", "b"]


def test_controls_are_on_by_default_and_identity_may_be_listed_when_they_are_off():
    config = load_config(MINIMAL)
    assert config.controls.identity and config.controls.baseline_replicas == 2
    assert [entry.display for entry in config.study_augmentations][-1] == "identity"
    off = load_config({"name": "t", "augmentations": ["affine", "identity"], "controls": {"identity": False}})
    assert [entry.display for entry in off.study_augmentations] == ["affine", "identity"]
    for name in ("quick", "fashion-mnist", "thesis-cifar10"):
        assert load_config(name).controls.identity, f"preset {name} runs the identity control"


def _null_entry(config):
    entry = config.study_augmentations[-1]
    assert config.is_null_control(entry)
    return entry


@pytest.mark.parametrize(
    "seeds,null_models,expected",
    [
        ([0, 1, 2], 6, [0, 1, 2, 3, 4, 5]),
        ([2, 7], 4, [2, 7, 0, 1]),
        ([5, 0, 3], 5, [5, 0, 3, 1, 2]),
        ([0, 1, 2], 2, [0, 1]),
        ([4], 1, [4]),
    ],
)
def test_null_models_take_the_study_seeds_first_then_the_smallest_unused(seeds, null_models, expected):
    config = load_config({**MINIMAL, "seeds": seeds, "controls": {"null_models": null_models}})
    assert config.seeds_of(_null_entry(config)) == expected
    assert config.seeds_of(config.augmentations[0]) == seeds


def test_null_models_default_to_twelve_with_a_quarter_grey_level_of_noise():
    config = load_config(MINIMAL)
    assert (config.controls.null_models, config.controls.null_noise_std) == (12, 1e-3)
    entry = _null_entry(config)
    assert (entry.name, entry.display) == ("identity", "identity")
    assert entry.resolved_params() == {"noise_std": 1e-3}
    assert entry.build().noise_std == 1e-3
    assert config.seeds_of(entry) == list(range(12))
    assert config.resolved()["controls"]["null_models"] == 12


@pytest.mark.parametrize("controls", [{"null_models": 0}, {"identity": False}])
def test_no_null_models_means_no_identity_control(controls):
    config = load_config({**MINIMAL, "controls": controls})
    assert [entry.display for entry in config.study_augmentations] == ["affine"]


def test_a_listed_identity_is_an_augmentation_like_any_other():
    config = load_config({"name": "t", "augmentations": ["identity"], "controls": {"identity": False}, "seeds": [3]})
    entry = config.study_augmentations[0]
    assert not config.is_null_control(entry) and config.seeds_of(entry) == [3]
    assert entry.resolved_params() == {}, "noise_std 0 stays out of the model key"


def test_plan_trains_one_null_model_per_null_seed_with_distinct_ids():
    from augcam.pipeline.plan import model_key, plan

    config = load_config({**MINIMAL, "seeds": [2, 7], "controls": {"null_models": 4}})
    runs = plan(config, "fingerprint")
    nulls = [run for run in runs if run.augmentation == "identity"]
    assert [run.seed for run in nulls] == [2, 7, 0, 1]
    assert [run.seed for run in runs if run.augmentation == "affine"] == [2, 7]
    assert len({run.model_id for run in runs}) == len(runs) == 1 + 2 + 4
    assert all(run.model_id.startswith(f"identity-s{run.seed}-") for run in nulls)
    # Same init and order as every other model: the random stream is all that differs.
    assert {(run.init_seed, run.ordering_seed) for run in runs} == {(0, 0)}
    key = model_key(config, "fingerprint", nulls[0].entry, 2)
    assert key["augmentation"]["params"] == {"noise_std": 1e-3} and key["augmentation"]["seed"] == 2
    # The noise is in the id: another null_noise_std trains other null models and nothing else.
    other = plan(
        load_config({**MINIMAL, "seeds": [2, 7], "controls": {"null_models": 4, "null_noise_std": 2e-3}}), "fingerprint"
    )
    assert [r.model_id for r in other if r.augmentation != "identity"] == [
        r.model_id for r in runs if r.augmentation != "identity"
    ]
    assert not {r.model_id for r in other} & {r.model_id for r in nulls}


def test_device_override_is_validated_with_the_rest_of_the_config():
    from augcam.config import with_device

    config = load_config({**MINIMAL, "device": "cuda", "resources": {"gpus_per_model": 0.5}})
    with pytest.raises(
        ConfigError,
        match=r"^--device: resources\.gpus_per_model: 0\.5 asks for GPUs, "
        r"but device is 'cpu'",
    ):
        with_device(config, "cpu")
    with pytest.raises(ConfigError, match=r"^--device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'$"):
        with_device(config, "gpu")
    plain = load_config(MINIMAL)
    moved = with_device(plain, "cpu")
    assert moved.device == "cpu" and moved.model_dump(exclude={"device"}) == plain.model_dump(exclude={"device"})

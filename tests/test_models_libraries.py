"""Models by library name (torchvision:NAME, timm:NAME), the automatic target layer and its layout,
the linear head proved by tracing, and initial weights from a local file. A few names per family,
at small inputs."""

import re

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from augcam.cams import linear_head_classifier
from augcam.cli import app
from augcam.errors import ConfigError
from augcam.models import (
    MODELS,
    LayerLayout,
    build_model,
    find_linear_head,
    find_target_layer,
    get_layer,
    layer_layout,
    load_weights,
    model_spec,
    register_model,
)
from augcam.training import state_digest

# (name, params, input channels, side): a CNN and a transformer of each library, small inputs.
TORCHVISION = [
    ("torchvision:mobilenet_v3_small", {}, 1, 64),
    ("torchvision:vit_b_16", {"image_size": 32}, 1, 32),
]
TIMM = [
    ("timm:resnet18", {}, 1, 64),
    ("timm:vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8}, 3, 32),
]
SAMPLE = [pytest.param(*case, id=case[0]) for case in TORCHVISION + TIMM]


@pytest.fixture(autouse=True)
def _timm_when_needed(request):
    """Tests of timm names skip when the optional timm is absent."""
    if "timm:" in request.node.name:
        pytest.importorskip("timm")


def _batch(channels, side, count=2, seed=0):
    return torch.randn(count, channels, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,params,channels,side", SAMPLE)
def test_library_model_builds_from_the_init_seed_and_trains_a_step(name, params, channels, side):
    model = build_model(name, channels, 7, init_seed=5, params=params)
    torch.manual_seed(999)  # the global RNG does not matter
    assert state_digest(model) == state_digest(build_model(name, channels, 7, init_seed=5, params=params))
    assert state_digest(model) != state_digest(build_model(name, channels, 7, init_seed=6, params=params))
    images, labels = _batch(channels, side, 4), torch.tensor([0, 1, 2, 6])
    before = state_digest(model)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and state_digest(model) != before
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (4, 7)
    layer, layout = find_target_layer(model, images)
    assert layout.grid[0] * layout.grid[1] > 1
    get_layer(model, layer)


def test_unknown_library_names_are_config_errors():
    with pytest.raises(
        ConfigError, match=r"torchvision has no classification model 'resnet500'.*'torchvision:resnet50'"
    ):
        model_spec("torchvision:resnet500")
    with pytest.raises(ConfigError, match=r"unknown model library 'keras'.*valid: torchvision, timm"):
        model_spec("keras:resnet50")
    with pytest.raises(ConfigError, match=r"model.params: torchvision:resnet18 does not take \['img_size'\]"):
        build_model("torchvision:resnet18", 3, 10, 0, params={"img_size": 32})


def test_timm_names_need_timm(monkeypatch):
    import sys

    from augcam.models.libraries import library_spec

    library_spec.cache_clear()
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm → ImportError
    try:
        with pytest.raises(ConfigError, match=r"needs the optional dependency timm: pip install 'augcam\[timm\]'"):
            model_spec("timm:resnet18")
    finally:
        library_spec.cache_clear()


# --- the automatic target layer ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name,params,channels,side,layer,layout",
    [
        ("torchvision:resnet18", {}, 1, 64, "layer4", LayerLayout("nchw", 0, (2, 2))),
        (
            "torchvision:vit_b_16",
            {"image_size": 32},
            1,
            32,
            "encoder.layers.encoder_layer_11.ln_1",
            LayerLayout("tokens", 1, (2, 2)),
        ),
        (
            "timm:vit_tiny_patch16_224",
            {"img_size": 32, "patch_size": 8},
            1,
            32,
            "blocks.11.norm1",
            LayerLayout("tokens", 1, (4, 4)),
        ),
        (
            "timm:deit_tiny_distilled_patch16_224",
            {"img_size": 32, "patch_size": 8},
            3,
            32,
            "blocks.11.norm1",
            LayerLayout("tokens", 2, (4, 4)),
        ),
        # Average-pooled patch tokens: the blocks' output still reaches the head; 4 registers + class token.
        (
            "timm:vit_tiny_patch16_224",
            {"img_size": 32, "patch_size": 8, "reg_tokens": 4, "global_pool": "avg"},
            1,
            32,
            "blocks",
            LayerLayout("tokens", 5, (4, 4)),
        ),
        (
            "timm:swin_tiny_patch4_window7_224",
            {"img_size": 64, "window_size": 2},
            3,
            64,
            "norm",
            LayerLayout("nhwc", 0, (2, 2)),
        ),
    ],
)
def test_target_layer_is_the_last_spatial_layer_that_reaches_the_head(name, params, channels, side, layer, layout):
    """After a class-token ViT's last attention only the class token reaches the head, so the
    layer chosen is the last block's first norm (pytorch-grad-cam's documented choice)."""
    model = build_model(name, channels, 10, 0, params=params).eval()
    assert find_target_layer(model, _batch(channels, side)) == (layer, layout)


def test_token_layout_without_model_attributes_follows_the_input_aspect():
    plain = torch.nn.Identity()
    assert layer_layout(plain, (2, 1 + 4 * 8, 16), (32, 64)) == LayerLayout("tokens", 1, (4, 8))
    assert layer_layout(plain, (2, 16, 4, 4), (32, 32)) == LayerLayout("nchw", 0, (4, 4))
    assert layer_layout(plain, (2, 4, 4, 768), (32, 32)) == LayerLayout("nhwc", 0, (4, 4))
    assert layer_layout(plain, (2, 10), (32, 32)) is None
    tokens = torch.arange(2 * 5 * 3.0).view(2, 5, 3)  # 1 prefix token, 2×2 grid, 3 channels
    maps = LayerLayout("tokens", 1, (2, 2)).to_maps(tokens)
    assert maps.shape == (2, 3, 2, 2) and torch.equal(maps[1, 2, 1, 0], tokens[1, 1 + 2, 2])


# --- the linear head, proved by tracing -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(n for n, spec in MODELS.items() if spec.head is not None))
def test_traced_head_agrees_with_every_declared_head(name):
    spec = MODELS[name]
    assert find_linear_head(build_model(name, 1, 10, 0), spec.head.layer) == spec.head


@pytest.mark.parametrize(
    "name,layer,expected",
    [
        ("densenet121", "features", None),  # F.relu between the features and the pooling
        ("tang_cnn", "features", None),  # flatten → linear, no pooling
        ("resnet18", "layer3", None),  # layer4 lies between
        ("torchvision:convnext_tiny", "features", None),  # a LayerNorm in the classifier
        ("torchvision:swin_t", "permute", ("avgpool", "head")),
    ],
)
def test_traced_head_only_where_the_graph_proves_it(name, layer, expected):
    model = build_model(name, 3, 10, 0).eval()
    head = find_linear_head(model, layer)
    assert (head if head is None else (head.pool, head.classifier)) == expected
    if head is not None:
        assert isinstance(linear_head_classifier(model, get_layer(model, layer), head), torch.nn.Linear)


# --- weights from a local file ----------------------------------------------------------------


def _saved(tmp_path, model, name="weights.safetensors"):
    path = tmp_path / name
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    else:
        torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_load_and_a_classifier_for_other_classes_is_replaced(tmp_path, suffix):
    source = build_model("torchvision:resnet18", 3, 10, init_seed=1)
    path = _saved(tmp_path, source, "w" + suffix)
    same = build_model("torchvision:resnet18", 3, 10, init_seed=2, weights=path)
    assert state_digest(same) == state_digest(source)
    fewer = build_model("torchvision:resnet18", 3, 4, init_seed=2)
    seeded_fc = fewer.fc.weight.clone()
    assert load_weights(fewer, path) == ["classifier fc replaced (10 classes in the file, 4 in the study)"]
    assert torch.equal(fewer.fc.weight, seeded_fc)  # the study's own seeded classifier
    assert torch.equal(fewer.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_rgb_stem_is_summed_for_one_channel_data(tmp_path):
    source = build_model("torchvision:resnet18", 3, 10, init_seed=1)
    gray = build_model("torchvision:resnet18", 1, 10, init_seed=2)
    assert load_weights(gray, _saved(tmp_path, source)) == [
        "conv1.weight summed over its 3 input channels for 1-channel data"
    ]
    assert torch.allclose(gray.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))


def test_missing_and_mismatched_weight_files_name_the_file_and_keys(tmp_path):
    model = build_model("torchvision:resnet18", 3, 10, 0)
    with pytest.raises(ConfigError, match=r"model.weights: .*nowhere.safetensors does not exist"):
        load_weights(model, tmp_path / "nowhere.safetensors")
    other = _saved(tmp_path, build_model("torchvision:resnet34", 3, 10, 0))
    with pytest.raises(
        ConfigError, match=r"weights.safetensors does not fit the model: unexpected layer1\.2\.bn1\.bias"
    ):
        load_weights(model, other)
    wide = build_model("torchvision:resnet18", 3, 10, 0)
    wide.layer4[1].conv2 = torch.nn.Conv2d(512, 512, 1, bias=False)
    with pytest.raises(
        ConfigError, match=r"shapes differ for layer4\.1\.conv2\.weight \(512, 512, 1, 1\) ≠ \(512, 512, 3, 3\)"
    ):
        load_weights(model, _saved(tmp_path, wide, "wide.safetensors"))
    pickled = tmp_path / "code.pt"
    torch.save({"weights": model.state_dict(), "hook": print}, pickled)  # weights_only refuses code
    with pytest.raises(ConfigError, match=r"code.pt cannot be read as safetensors or a PyTorch state dict"):
        load_weights(model, pickled)


def test_validate_prints_the_layer_and_refuses_bad_weights_with_exit_2(tmp_path, fashion_mnist_available):
    study = ["--set", "data.train_size=200", "--set", "data.val_size=50", "--set", "data.test_size=50"]
    vit = ["--set", "model.name=torchvision:vit_b_16", "--set", "model.params={image_size: 32}"]
    vit += ["--set", "data.image_size=32"]
    result = CliRunner().invoke(app, ["validate", "quick", *study, *vit])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "target layer encoder.layers.encoder_layer_11.ln_1 (2×2, tokens, 1 prefix token(s) dropped" in result.stdout
    result = CliRunner().invoke(app, ["validate", "quick", *study, "--set", "model.target_layer=classifier"])
    assert result.exit_code == 2
    assert re.search(r"model.target_layer: 'classifier' outputs \(2, 10\), which is no spatial map", result.stderr)
    missing = tmp_path / "absent.safetensors"
    result = CliRunner().invoke(app, ["validate", "quick", *study, "--set", f"model.weights={missing}"])
    assert result.exit_code == 2 and "absent.safetensors does not exist" in result.stderr.replace("\n", "")
    assert result.stderr.count("error:") == 1


def test_user_model_without_target_layer_gets_one_found():
    @register_model("tiny_auto_net")
    def tiny(in_channels, num_classes, width=4):
        return torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, width, 3),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(width, num_classes),
        )

    try:
        model = build_model("tiny_auto_net", 1, 3, 0, params={"width": 6}).eval()
        assert (
            MODELS["tiny_auto_net"].target_layer is None and MODELS["tiny_auto_net"].library == __name__.split(".")[0]
        )
        # The ReLU computes the last spatial map; it feeds the pooling and the linear layer.
        assert find_target_layer(model, _batch(1, 8)) == ("1", LayerLayout("nchw", 0, (6, 6)))
        assert find_linear_head(model, "1") is not None
    finally:
        MODELS.pop("tiny_auto_net")


def test_the_own_module_example_of_docs_models_runs_a_study(tmp_path, fashion_mnist_available, monkeypatch):
    """docs/models.md's notebook-style example, as written, end to end (in a scratch directory)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    section = text[text.index("## Your own `nn.Module`") :]
    code = section[
        section.index("```python") + len("```python") : section.index("```\n", section.index("```python") + 9)
    ]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    try:
        exec(compile(code, "docs/models.md", "exec"), namespace)
        result = namespace["result"]
        assert len(result.performance) == 2 and result.performance["test_accuracy"].notna().all()
        assert (tmp_path / "runs" / "my-model" / "report.html").exists()
        manifest = (tmp_path / "runs" / "my-model" / "manifest.json").read_text()
        assert '"target_layer": "stages"' in manifest and "fast (global average pooling" in manifest
        report = (tmp_path / "runs" / "my-model" / "report.html").read_text()
        assert "user two_stage_net (width=8); weights: none (initialised from training.init_seed)" in report
    finally:
        MODELS.pop("two_stage_net", None)

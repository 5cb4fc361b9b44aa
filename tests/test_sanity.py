"""The cascading-randomisation sanity check passes for Grad-CAM on a trained model and fails for
a 'CAM' that ignores the model (an edge detector)."""

import pandas as pd
import pytest
import torch

from augcam.cams.sanity import cascading_randomization, layers_in_forward_order, sanity_verdict, spearman_summary
from augcam.models import build_model


def _trained_small_cnn():
    # A few hundred steps on a separable synthetic task: class = which half holds a bright blob,
    # so the trained model has a localised, input-dependent explanation to lose.
    generator = torch.Generator().manual_seed(0)
    model = build_model("small_cnn", in_channels=1, num_classes=2, init_seed=0)
    images = torch.rand(256, 1, 28, 28, generator=generator) * 0.2
    labels = torch.randint(0, 2, (256,), generator=generator)
    for i, label in enumerate(labels.tolist()):
        col = 4 if label == 0 else 18
        row = int(torch.randint(4, 18, (1,), generator=generator))
        images[i, 0, row : row + 6, col : col + 6] = 1.0
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(3):
        for start in range(0, 256, 32):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(images[start : start + 32]), labels[start : start + 32])
            loss.backward()
            optimizer.step()
    model.eval()
    return model, images[:48]


def _edge_detector(_model, images, _targets):
    import kornia

    edges = kornia.filters.sobel(images).amax(dim=1)
    flat = edges.flatten(1)
    low, high = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return (edges - low) / (high - low + 1e-7)


def test_gradcam_passes_and_edge_detector_fails():
    model, images = _trained_small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    gradcam_table = cascading_randomization(model, "features", images, method="gradcam")
    edge_table = cascading_randomization(model, "features", images, cam_function=_edge_detector)

    assert gradcam_table["spearman_median"].iloc[0] == 1.0  # step 0: the maps against themselves
    assert sanity_verdict(gradcam_table)["passes"]
    verdict = sanity_verdict(edge_table)
    assert not verdict["passes"] and verdict["final_median"] == 1.0
    # The check works on a copy: the trained model is untouched and stays in eval mode.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_layers_are_randomised_from_the_output_down():
    model = build_model("resnet18", in_channels=3, num_classes=4, init_seed=0)
    order = layers_in_forward_order(model, torch.rand(1, 3, 32, 32))
    assert order[0] == "conv1" and order[-1] == "fc"
    # Every module owning parameters runs, once each.
    owners = [n for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    assert sorted(order) == sorted(owners)
    table = cascading_randomization(model, "layer4", torch.rand(4, 3, 32, 32), method="gradcam")
    assert table["layer"].iloc[1] == "fc" and len(table) == len(order) + 1


@pytest.mark.parametrize(("final_spearman", "passes"), [(-0.9, False), (0.9, False), (0.3, True), (-0.3, True)])
def test_verdict_is_on_the_absolute_spearman(final_spearman, passes):
    # Maps inverted by the randomisation (Spearman −0.9) still carry the trained model's structure:
    # the check must fail on them exactly as on +0.9. A verdict on the signed median would pass them.
    generator = torch.Generator().manual_seed(0)
    spread = 0.02 * torch.randn(40, generator=generator, dtype=torch.float64)
    table = pd.DataFrame(
        [
            spearman_summary(0, "(trained model)", torch.ones(40, dtype=torch.float64)),
            spearman_summary(1, "fc", torch.full((40,), 0.5 * final_spearman, dtype=torch.float64) + spread),
            spearman_summary(2, "features", torch.full((40,), final_spearman, dtype=torch.float64) + spread),
        ]
    )
    verdict = sanity_verdict(table)
    assert verdict["passes"] is passes
    assert verdict["final_median"] == pytest.approx(abs(final_spearman), abs=0.02)
    assert verdict["steps"] == 2

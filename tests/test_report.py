"""`write_report` and `augcam report` on a small synthetic run directory (hand-made tables, CAMs and
a 12-image image-folder dataset), and report.html opened in a real headless browser."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from augcam.analysis import ReportError, render_report, write_report
from augcam.analysis.cam_grids import load_test_images
from augcam.cli import app
from augcam.config import load_config
from augcam.data.splits import make_split, study_split
from augcam.errors import AugcamError
from augcam.rundir import RunDir, RunLock

CLASSES = ("circle", "square", "stripe")
SIZE = 8  # images are 8×8, CAMs 4×4 at "layer resolution"
AUGS = ("affine", "cutmix", "gaussian_blur")
SEEDS = (0, 1)
METRICS = ("mad", "pearson", "overlap_20", "class_kld")  # few: each one adds five figures to draw
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def make_images(root: Path) -> None:
    """root/{train,test}/<class>/*.png: four 8×8 grayscale images per class and split."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for k in range(4):
                pixels = rng.integers(0, 60, size=(SIZE, SIZE), dtype=np.uint8)
                pixels[2:6, 2 + label : 4 + label] = 200 + 10 * k  # a bright block that moves with the class
                Image.fromarray(pixels, mode="L").save(root / split / name / f"{k}.png")


def make_run(out: Path, data_root: Path, controls: bool = True) -> Path:
    """A finished run directory of 1 baseline + 3 augmentations × 2 seeds on 12 test images; with
    `controls`, also the control tables a study with controls writes (noise floor of two baseline
    replicas, augmentation-vs-augmentation rows, a sanity check with a data-randomisation row)."""
    rng = np.random.default_rng(1)
    config = load_config(
        {
            "name": "synthetic",
            "description": "hand-made run for the report tests",
            "data": {"dataset": "image-folder", "root": str(data_root), "val_fraction": 0.25},
            "model": {"name": "small_cnn"},
            "augmentations": list(AUGS),
            "seeds": list(SEEDS),
        }
    )
    out.mkdir(parents=True)
    (out / "study.yaml").write_text(yaml.safe_dump(config.resolved(), sort_keys=False))
    labels = np.repeat(np.arange(len(CLASSES)), 4)
    n = len(labels)
    models = [("baseline-000000000000", "baseline", None)] + [
        (f"{aug}-s{seed}-{k:012d}", aug, seed) for k, (aug, seed) in enumerate((a, s) for a in AUGS for s in SEEDS)
    ]
    predictions = {}
    (out / "cams").mkdir()
    for model_id, _, _ in models:
        logits = torch.from_numpy(rng.normal(size=(n, len(CLASSES))).astype(np.float32))
        predictions[model_id] = logits.argmax(1)
        save_file(
            {
                "raw": torch.from_numpy(rng.uniform(0, 3, size=(n, 4, 4)).astype(np.float32)),
                "logits": logits,
                "predictions": logits.argmax(1),
                "targets": logits.argmax(1),
                "image_index": torch.arange(n),
            },
            str(out / "cams" / f"{model_id}.safetensors"),
        )
        history = pd.DataFrame(
            {
                "epoch": [1, 2],
                "train_loss": rng.uniform(0.5, 1, 2),
                "train_accuracy": rng.uniform(0.5, 1, 2),
                "val_loss": rng.uniform(0.5, 1, 2),
                "val_accuracy": rng.uniform(0.5, 1, 2),
            }
        )
        (out / "models" / model_id).mkdir(parents=True)
        history.to_parquet(out / "models" / model_id / "history.parquet", index=False)
    (out / "tables").mkdir()
    pd.DataFrame(
        [
            {
                "model_id": mid,
                "augmentation": aug,
                "seed": seed,
                "status": "complete",
                "test_accuracy": acc,
                "precision": acc,
                "recall": acc,
                "f1": acc,
                "best_epoch": 2,
                "best_val_accuracy": acc,
                "train_seconds": 1.0,
            }
            for (mid, aug, seed), acc in zip(models, rng.uniform(0.6, 0.9, len(models)))
        ]
    ).astype({"seed": "Int64", "best_epoch": "Int64"}).to_parquet(out / "tables/performance.parquet")
    base_pred = predictions[models[0][0]].numpy()
    frames = [
        pd.DataFrame(
            {
                "model_id": mid,
                "augmentation": aug,
                "seed": pd.array([seed] * n, dtype="Int64"),
                "image_index": np.arange(n),
                "label": labels,
                "baseline_pred": base_pred,
                "model_pred": predictions[mid].numpy(),
                **{m: rng.uniform(0, 1, n) for m in METRICS},
            }
        )
        for mid, aug, seed in models[1:]
    ]
    metrics = pd.concat(frames, ignore_index=True)
    metrics.to_parquet(out / "tables/metrics.parquet", index=False)
    grouped = metrics.groupby(["augmentation", "image_index"], sort=False)
    aggregated = grouped[list(METRICS)].mean()
    aggregated.insert(0, "n_models", grouped.size())
    aggregated.insert(0, "baseline_pred", grouped["baseline_pred"].first())
    aggregated.insert(0, "label", grouped["label"].first())
    aggregated.reset_index().to_parquet(out / "tables/aggregated.parquet", index=False)
    if controls:
        write_control_tables(out, labels, base_pred, rng)
    (out / "manifest.json").write_text(
        json.dumps(
            {
                "augcam_version": "0.1.0",
                "config_hash": config.config_hash(),
                "device": "cpu",
                "device_name": "x86_64",
                "versions": {"augcam": "0.1.0", "torch": torch.__version__},
                "started": "2026-01-01T00:00:00+00:00",
                "finished": "2026-01-01T00:01:00+00:00",
                "seconds": 60.0,
                "status": "complete",
                "stages": {
                    "train": {"status": "complete", "seconds": 50.0},
                    "explain": {"status": "complete", "seconds": 5.0},
                    "compare": {"status": "complete", "seconds": 4.0},
                },
                **(
                    {
                        "controls": {
                            "identity": False,
                            "baseline_replicas": 2,
                            "sanity_images": 12,
                            "data_randomization": True,
                        }
                    }
                    if controls
                    else {}
                ),
            }
        )
    )
    return out


def write_control_tables(out: Path, labels: np.ndarray, base_pred: np.ndarray, rng) -> None:
    n = len(labels)
    pd.concat(
        [
            pd.DataFrame(
                {
                    "model_id": f"baseline-{replica.replace('+', '')}-000000000000",
                    "replica": replica,
                    "image_index": np.arange(n),
                    "label": labels,
                    "baseline_pred": base_pred,
                    "model_pred": base_pred,
                    **{m: rng.uniform(0, 1, n) for m in METRICS},
                }
            )
            for replica in ("ordering+1", "init+1")
        ],
        ignore_index=True,
    ).to_parquet(out / "tables/noise_floor.parquet", index=False)
    pd.DataFrame(
        [
            {
                "augmentation_a": a,
                "augmentation_b": b,
                "seed": seed,
                "image_index": i,
                **{m: rng.uniform(0, 1) for m in METRICS},
            }
            for k, a in enumerate(AUGS)
            for b in AUGS[k + 1 :]
            for seed in SEEDS
            for i in range(n)
        ]
    ).astype({"seed": "Int64"}).to_parquet(out / "tables/between_augmentations.parquet", index=False)
    layers = ["(trained model)", "classifier", "conv2", "conv1"]
    median = [1.0, 0.6, 0.3, 0.05]
    rows = [
        {
            "test": "cascading",
            "method": "gradcam",
            "step": step,
            "layer": layer,
            "spearman_median": m,
            "spearman_q25": m - 0.1 * (step > 0),
            "spearman_q75": min(1.0, m + 0.1),
            "abs_spearman_median": m,
            "n_images": n,
            "n_undefined": 0,
        }
        for step, (layer, m) in enumerate(zip(layers, median))
    ]
    rows.append(
        {
            "test": "data",
            "method": "gradcam",
            "step": 1,
            "layer": "(labels permuted)",
            "spearman_median": 0.2,
            "spearman_q25": 0.1,
            "spearman_q75": 0.3,
            "abs_spearman_median": 0.2,
            "n_images": n,
            "n_undefined": 0,
        }
    )
    pd.DataFrame(rows).to_csv(out / "tables/sanity.csv", index=False)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    make_images(root)
    return root


@pytest.fixture(scope="module")
def reported(tmp_path_factory, data_root):
    """A synthetic run with its report written once; tests that change it use a copy."""
    run = make_run(tmp_path_factory.mktemp("runs") / "synthetic", data_root)
    write_report(run)
    return run


def test_every_analysis_is_written(reported):
    tables = {p.name for p in (reported / "tables").glob("*.csv")}
    assert tables == {
        "performance_summary.csv",
        "pairs_strongest.csv",
        "pairs_weakest.csv",
        "segment_counts.csv",
        "segment_medians.csv",
        "extreme_images.csv",
        "summary.csv",
        "clusters.csv",
        "noise_floor_summary.csv",
        "significance.csv",
        "between_augmentations_median.csv",
        "sanity.csv",
        "sanity_verdict.csv",
        *(f"correlation_{m}.csv" for m in METRICS),
    }
    correlation = pd.read_csv(reported / "tables/correlation_mad.csv", index_col=0)
    assert list(correlation.index) == list(AUGS) and list(correlation.columns) == list(AUGS)
    counts = pd.read_csv(reported / "tables/segment_counts.csv")
    assert (counts["images"] == 12).all() and len(counts) == len(AUGS) * len(SEEDS)
    figures = {p.name for p in (reported / "figures").iterdir()}
    stems = (
        ["gallery", "performance", "training_curves"]
        + [f"{kind}_{m}" for kind in ("distribution", "correlation", "segmented") for m in METRICS]
        + [f"extreme_{m}_{c}" for m in METRICS for c in ("mean", "std")]
        + ["clusters", "between_augmentations", "noise_effects", "sanity"]
    )
    assert figures == {f"{s}.{ext}" for s in stems for ext in ("png", "svg")}
    with Image.open(reported / "figures/performance.png") as png:
        assert min(png.info["dpi"]) >= 149.9
    assert (reported / "figures/correlation_mad.svg").read_text().lstrip().startswith("<?xml")
    assert not list(reported.rglob("*.tmp"))


def test_report_is_one_self_contained_file_in_the_contracted_order(reported):
    html = (reported / "report.html").read_text()
    assert not re.search(r"<script|<link(?! rel=\"icon\" href=\"data:,\")|@import|url\(", html)
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html), "a reference outside the file"
    sources = re.findall(r"<img src=\"([^\"]+)\"", html)
    assert len(sources) == len(list((reported / "figures").glob("*.png")))
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(re.findall(r"<figcaption>\s*\S", html)) == len(sources)
    headings = re.findall(r"<h2>(\d+)\. ([^<]+)</h2>", html)
    assert [int(n) for n, _ in headings] == list(range(1, len(headings) + 1))
    assert [title for _, title in headings] == [
        "What the models were trained on",
        "Performance",
        "Metric distributions",
        "Correlation maps between augmentations",
        "Strongest and weakest pairs",
        "Impact profiles",
        "Results by prediction agreement",
        "Extreme images",
        "Summary table",
        "Is it more than noise?",
        "Sanity check",
    ]
    assert html.index("How does a data augmentation change where an image classifier looks?") < html.index("<h2>")
    manifest = json.loads((reported / "manifest.json").read_text())
    footer = html[html.index("<footer>") :]
    for expected in (
        manifest["config_hash"],
        "augcam",
        "0.1.0",
        "x86_64",
        "explain",
        "matplotlib",
        "report (this file)",
        "started 2026-01-01T00:00:00+00:00, finished 2026-01-01T00:01:00+00:00, 60.0 s",
    ):
        assert expected in footer
    assert "could not be loaded" not in html  # the image folder is there, so the grids show the images
    # The study has baseline replicas but no null models: the section says there is no model-level test.
    noise = html[html.index('<section id="noise">') : html.index('<section id="sanity">')]
    assert "This run has no null models (controls.identity, controls.null_models)" in noise
    assert "How much the baseline itself depends on its init seed and data order" in noise
    assert "Which images changed: per-image tests (descriptive)" in noise


def test_cli_report_recreates_identical_tables_and_figures(reported, tmp_path):
    copy = tmp_path / "again"
    shutil.copytree(reported, copy)
    (copy / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").exists()
    for sub, pattern in (("tables", "*.csv"), ("figures", "*")):
        before = {p.name: p.read_bytes() for p in (reported / sub).glob(pattern)}
        after = {p.name: p.read_bytes() for p in (copy / sub).glob(pattern)}
        assert before.keys() == after.keys()
        assert [name for name in before if before[name] != after[name]] == []


def test_cli_report_of_a_missing_directory_is_one_message(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "nowhere" in result.output and "no such run directory" in result.output
    assert "Traceback" not in result.output


def test_write_report_holds_the_run_directory_lock(reported, tmp_path):
    copy = tmp_path / "busy"
    shutil.copytree(reported, copy)
    (copy / "report.html").unlink()
    with RunLock(RunDir(copy).lock_file):
        with pytest.raises(AugcamError, match="in use by another augcam run"):
            write_report(copy)
        assert not (copy / "report.html").exists()
        # The lock's holder (the study's report stage) renders without taking it a second time.
        assert render_report(copy) == copy / "report.html"
    assert (copy / "report.html").exists()
    assert not (copy / ".augcam.lock").exists() and not (reported / ".augcam.lock").exists()


@pytest.mark.parametrize("own_val", [False, True])
def test_study_split_is_make_split_with_the_data_section(own_val):
    data = load_config(
        "quick",
        overrides={
            "data.train_size": 60,
            "data.val_size": 20,
            "data.test_size": 30,
            "data.split_seed": 7,
            "data.val_fraction": 0.2,
        },
    ).data
    rng = np.random.default_rng(0)
    train, test, val = (torch.from_numpy(rng.integers(0, 5, n)) for n in (300, 100, 80))
    val_labels = val if own_val else None
    split = study_split(data, train, test, val_labels)
    expected = make_split(
        train, test, val_fraction=0.2, seed=7, train_size=60, val_size=20, test_size=30, val_labels=val_labels
    )
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(split, part), getattr(expected, part))
    assert len(split.train) == 60 and len(split.val) == 20 and len(split.test) == 30
    with pytest.raises(ValueError, match="test_size"):
        study_split(data, train, test[:20], val_labels)


def test_test_images_are_the_studys_own(reported, data_root):
    study = yaml.safe_load((reported / "study.yaml").read_text())
    images = load_test_images(study, np.array([0, 5, 11]), np.array([0, 1, 2]))
    for index, (name, k) in zip((0, 5, 11), (("circle", 0), ("square", 1), ("stripe", 3))):
        expected = np.asarray(Image.open(data_root / "test" / name / f"{k}.png"), dtype=np.float64) / 255
        np.testing.assert_allclose(images.rgb(index)[..., 0], expected, atol=1e-6)
    with pytest.raises(ReportError, match="labels"):
        load_test_images(study, np.array([0, 5]), np.array([2, 2]))


def test_without_the_test_images_the_report_says_so(reported, tmp_path):
    copy = tmp_path / "no-images"
    shutil.copytree(reported, copy)
    study = yaml.safe_load((copy / "study.yaml").read_text())
    study["data"]["root"] = str(tmp_path / "moved-away")
    (copy / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    write_report(copy, pairs=2)
    html = (copy / "report.html").read_text()
    assert "could not be loaded" in html and "moved-away" in html
    # Without the training images there is no gallery, and no stale one is left behind.
    assert "What the models were trained on" not in html and not (copy / "figures/gallery.png").exists()
    # The other analyses do not need the images; `pairs` sets how many pairs each map gives.
    assert pd.read_csv(copy / "tables/pairs_strongest.csv")["count"].sum() == 2 * len(METRICS)


def test_base_augmentations_are_named_in_the_report_when_the_study_has_them(reported, tmp_path):
    assert "base augmentations" not in (reported / "report.html").read_text()
    copy = tmp_path / "based"
    shutil.copytree(reported, copy)
    study = yaml.safe_load((copy / "study.yaml").read_text())
    study["training"]["base_augmentations"] = [
        {"name": "horizontal_flip", "label": "horizontal_flip", "params": {}},
        {"name": "translate", "label": "translate", "params": {"pixels": 2}},
    ]
    (copy / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    write_report(copy)
    html = (copy / "report.html").read_text()
    assert "also trains with horizontal_flip and translate" in html
    assert re.search(
        r"<td>base augmentations</td><td>horizontal_flip; translate: pixels=2 \(every model, the "
        r"baseline included\)</td>",
        html,
    )


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda run: shutil.rmtree(run / "tables"), "tables/performance.parquet"),
        (lambda run: (run / "tables/aggregated.parquet").unlink(), "tables/aggregated.parquet"),
        (lambda run: (run / "tables/metrics.parquet").write_bytes(b"not parquet"), "tables/metrics.parquet"),
        (lambda run: (run / "study.yaml").unlink(), "study.yaml"),
        (lambda run: next((run / "models").glob("cutmix-s1-*/history.parquet")).unlink(), "history.parquet"),
        (lambda run: next((run / "cams").glob("affine-s0-*")).unlink(), ".safetensors"),
    ],
)
def test_a_broken_run_directory_is_one_clear_error_and_writes_nothing(reported, tmp_path, damage, named):
    run = tmp_path / "broken"
    shutil.copytree(reported, run)
    shutil.rmtree(run / "figures")
    (run / "report.html").unlink()
    for csv in (run / "tables").glob("*.csv"):
        csv.unlink()
    damage(run)
    with pytest.raises(ReportError, match=re.escape(named)):
        write_report(run)
    assert not (run / "figures").exists() and not (run / "report.html").exists()
    assert not list(run.rglob("*.csv")) and not list(run.rglob("*.tmp"))


def _chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        # `make test` installs them (the `browser` target); a missing browser is a failure, not a skip.
        pytest.fail("Debian's chromium and chromium-driver are not installed: run `make browser`")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1800",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_report_opens_in_a_headless_browser(reported):
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome()
    try:
        driver.get((reported / "report.html").as_uri())
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script(
                "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"
            )
        )
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.naturalHeight])"
        )
        assert len(images) == len(list((reported / "figures").glob("*.png")))
        broken = [alt for alt, width, height in images if not (width > 0 and height > 0)]
        assert broken == []
        # Nothing was fetched from anywhere: data: URIs are not resources.
        assert driver.execute_script("return performance.getEntriesByType('resource').map(r => r.name)") == []
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        title = driver.execute_script("return document.querySelector('h1').textContent")
        assert "where an image classifier looks" in title
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "report.png"))
    finally:
        driver.quit()
    with Image.open(ARTIFACTS / "report.png") as shot:
        assert shot.size[0] >= 1000

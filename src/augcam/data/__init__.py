"""Datasets: each one loads as in-memory `ImageSet`s, the official train and test sets, and
optionally the dataset's own validation set.

A dataset is a loader registered in `DATASETS` under a name; `load_dataset(name, root, download)`
looks it up and calls it. Loaders read the files themselves (IDX, CIFAR pickles, image folders)
and check them strictly, so a truncated or mixed-up file is a `DataError` that names the file
instead of a shape error deep inside training. Users can register their own loader:

    @DATASETS.register("my-data")
    def load_my_data(root: Path | None, download: bool) -> tuple[ImageSet, ImageSet]: ...

A loader may return a third `ImageSet`, the dataset's own validation set (e.g. `crosses`, whose
validation set has its spurious cue flipped like the test set): a study then validates on it
instead of splitting `val_fraction` off the training set (`load_dataset_parts`).

Where files are looked for: only under the `root` argument (`data.root`) when one is given;
otherwise, in order, `$AUGCAM_DATA`, places specific to a dataset (Debian's Fashion-MNIST
package), then augcam's download cache.

Modules: `base` (`ImageSet`, `DATASETS`, the loading and file-search functions), one per source
of images, each registering its loaders on import (`idx`: MNIST and Fashion-MNIST; `cifar`:
CIFAR-10; `folder`: an image folder; `mnist5k`: the 5k-image MNIST subsets; `synthetic`: the
`crosses` set), and `splits` (stratified splits and subsets, normalisation statistics).
"""

# Imported for their side effect: each module registers its loaders in DATASETS.
from augcam.data import cifar, folder, idx, mnist5k, synthetic  # noqa: F401
from augcam.data.base import (
    DATASETS,
    DatasetParts,
    ImageSet,
    data_env_dir,
    download_dir,
    load_dataset,
    load_dataset_parts,
    search_dirs,
)

__all__ = [
    "ImageSet",
    "DatasetParts",
    "DATASETS",
    "load_dataset",
    "load_dataset_parts",
    "data_env_dir",
    "download_dir",
    "search_dirs",
]

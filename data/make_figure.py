"""Draw data/real_vs_synthetic.png: a CHASE_DB1 photograph beside a synthetic one.

Run from the project root, with CHASE_DB1 in the data root (see data/README.md)::

    python data/make_figure.py                       # reads RETINA_DATA_DIR or ~/.cache/retina_lib
    python data/make_figure.py --root ../shared/datasets

The figure shows CHASE_DB1 Image_01L (M. M. Fraz et al., IEEE Trans. Biomed.
Eng. 59(9), 2012; CC BY 4.0) and must keep that credit wherever it is shown.
The PNG is saved with a reduced colour palette to stay small.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from retina_lib.data import load_dataset, synthetic_dataset  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "real_vs_synthetic.png"
CREDIT = "CHASE_DB1 Image_01L: M. M. Fraz et al., IEEE Trans. Biomed. Eng. 59(9), 2012 (CC BY 4.0)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="data root holding CHASEDB1/ (default: RETINA_DATA_DIR or cache)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    real = load_dataset("chase_db1", "train", root=args.root)[0]
    synthetic = synthetic_dataset("train", n=1, size=real.size)[0]

    figure, axes = plt.subplots(2, 2, figsize=(8, 8.15))
    panels = [
        (real.image, f"real: CHASE_DB1 {real.name}"),
        (real.label, "its first observer's vessel map"),
        (synthetic.image, f"synthetic: {synthetic.name}"),
        (synthetic.label, "its exact vessel label"),
    ]
    for axis, (picture, title) in zip(axes.flat, panels):
        axis.imshow(picture, cmap="gray", interpolation="antialiased")
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.text(0.5, 0.01, CREDIT, ha="center", fontsize=8)
    figure.tight_layout(rect=(0, 0.025, 1, 1))

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    # A 256-colour palette keeps the file small; photographs barely change.
    Image.open(buffer).convert("RGB").quantize(colors=256).save(args.output, optimize=True)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()

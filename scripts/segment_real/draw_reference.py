"""Reference mask of a real smear crop, drawn by hand as polygons.

The photograph is `images/test.jpg` of the PyPI package `cbc` 1.1.0 (Amine
Neggazi, MIT licence; see crates/segment/tests/fixtures/LICENSE-cbc.txt): a
May-Grünwald-Giemsa-type smear with one neutrophil. This script

1. crops 257x257 pixels around the neutrophil (ALL-IDB2's crop size) and
   writes it as crates/segment/tests/fixtures/cbc_neutrophil.png;
2. fills the polygons below, traced by eye on a 3x enlargement of the crop
   with a 16-pixel grid (not from leukex's output), into
   cbc_neutrophil_reference.png with leukex's ids
   (0 background, 1 nucleus, 2 cytoplasm, 3 vacuole, 4 rbc).

Usage: python draw_reference.py path/to/cbc-1.1.0-py3-none-any.whl
(`pip download --no-deps cbc==1.1.0` fetches the wheel).
"""

import io
import sys
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw

FIXTURES = Path(__file__).resolve().parents[2] / "crates/segment/tests/fixtures"
# Crop box in the 1226x652 photograph: centred on the neutrophil.
BOX = (752, 84, 1009, 341)

# Crop coordinates (x, y), traced clockwise.
CELL = [(130, 68), (167, 75), (193, 97), (208, 127), (213, 153), (207, 187), (190, 213),
        (160, 230), (130, 235), (100, 232), (70, 217), (47, 190), (38, 157), (42, 123),
        (57, 97), (80, 78), (103, 70)]
# Two lobes of the segmented nucleus, joined by a bridge.
NUCLEUS = [(127, 97), (143, 95), (160, 100), (167, 120), (175, 140), (173, 160), (163, 168),
           (140, 172), (120, 173), (112, 175), (107, 187), (97, 197), (80, 197), (70, 192),
           (67, 173), (63, 160), (67, 140), (68, 132), (83, 125), (100, 128), (113, 133),
           (120, 122), (120, 110)]
RED_CELLS = [
    # top centre (cut by the top border)
    [(28, 20), (32, 0), (190, 0), (192, 20), (187, 40), (167, 57), (133, 65), (100, 65),
     (67, 60), (40, 47), (30, 33)],
    # top right
    [(193, 0), (240, 0), (232, 8), (215, 12), (200, 8)],
    # left, middle
    [(0, 63), (15, 65), (28, 80), (32, 110), (25, 135), (10, 143), (0, 145)],
    # left, lower
    [(0, 157), (20, 160), (33, 180), (35, 205), (25, 225), (10, 233), (0, 233)],
    # right
    [(257, 138), (240, 140), (230, 155), (226, 180), (230, 205), (242, 225), (257, 233)],
    # bottom left
    [(33, 257), (37, 243), (55, 233), (80, 232), (100, 240), (105, 257)],
    # bottom right
    [(180, 257), (185, 240), (205, 228), (230, 228), (250, 240), (255, 257)],
]


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith("images/test.jpg"))
        photo = Image.open(io.BytesIO(z.read(name))).convert("RGB")
    crop = photo.crop(BOX)
    crop.save(FIXTURES / "cbc_neutrophil.png")
    mask = Image.new("L", crop.size, 0)
    d = ImageDraw.Draw(mask)
    for poly in RED_CELLS:
        d.polygon(poly, fill=4)
    d.polygon(CELL, fill=2)
    d.polygon(NUCLEUS, fill=1)
    mask.save(FIXTURES / "cbc_neutrophil_reference.png")


if __name__ == "__main__":
    main(sys.argv[1])

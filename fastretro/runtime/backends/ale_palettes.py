"""ALE's colour palettes: the worker turns ALE's raw screen into gray itself, in the resize.

ALE draws a frame as TIA colour codes, one byte a pixel (``getScreen`` copies them in ~1 us), and
maps them through its palette only when asked (``getScreenGrayscale`` ~17 us a frame,
``getScreenRGB`` ~26 us; ``python bench/bench_ale_worker.py`` times them). Max-pooling and
resizing read every pixel anyway, so the workers take the codes and look each one's gray up in
the same pass (``kernels.palette_area_resize_into``): the same numbers as ALE's gray, without
ALE's conversion of every frame.

ALE chooses the palette by the ROM's display format (NTSC, PAL or SECAM), which it does not
expose; :func:`identify_palette` finds the one whose grays are ALE's on a frame it shows.
"""

from __future__ import annotations

import numpy as np

#: ALE's "standard" palettes, ``0xRRGGBB`` per colour code, six hex digits each, from
#: src/ale/common/Palettes.hpp (unchanged since ALE 0.9). Codes are even; the odd entry after
#: each colour holds its gray (``round(0.2989 R + 0.587 G + 0.114 B)``), which is what ALE's
#: ``applyPaletteGrayscale`` reads: ``palette[code + 1] & 0xFF``.
PALETTES: dict[str, str] = {
    "NTSC": (
        "0000000000004a4a4a4a4a4a6f6f6f6f6f6f8e8e8e8e8e8eaaaaaaaaaaaac0c0c0c0c0c0d6d6d6d6d6d6"
        "ecececececec48480040404069690f5f5f5f86861d7a7a7aa2a22a949494bbbb35acacacd2d240c1c1c1"
        "e8e84ad6d6d6fcfc54e9e9e97c2c003f3f3f904811575757a262216e6e6eb47a30838383c3903d969696"
        "d2a44aa7a7a7dfb755b8b8b8ecc860c7c7c7901c003b3b3ba33915555555b553286b6b6bc66c3a818181"
        "d5824a949494e39759a7a7a7f0aa67b7b7b7fcbc74c7c7c79400002c2c2ca71a1a444444b832325a5a5a"
        "c848486e6e6ed65c5c808080e46f6f929292f08080a1a1a1fc9090b0b0b084006433333397197a4a4a4a"
        "a8308f5f5f5fb846a2737373c659b3848484d46cc3959595e07cd2a4a4a4ec8ce0b2b2b2500084272727"
        "68199a3f3f3f7d30ad5555559246c06b6b6ba459d07d7d7db56ce08f8f8fc57cee9f9f9fd48cfcaeaeae"
        "140090161616331aa33131314e32b54949496848c66060607f5cd5747474956fe3888888a980f0999999"
        "bc90fca9a9a9000094111111181aa72929292d32b84040404248c8555555545cd6686868656fe4797979"
        "7580f08989898490fc999999001c88202020183b9d3c3c3c2d57b05555554272c26d6d6d548ad2828282"
        "65a0e196969675b5efa8a8a884c8fcbababa0030642828281850804545452d6d985f5f5f4288b0787878"
        "54a0c58d8d8d65b7d9a2a2a275ccebb6b6b684e0fcc8c8c80040302b2b2b18624e4a4a4a2d8169656565"
        "429e827f7f7f54b89997979765d1aeadadad75e7c2c1c1c184fcd4d4d4d40044002828281a661a474747"
        "32843262626248a0487c7c7c5cba5c9393936fd26fa9a9a980e880bdbdbd90fc90cfcfcf143c00292929"
        "355f184a4a4a527e2d6868686e9c4284848487b7549d9d9d9ed065b5b5b5b4e775cbcbcbc8fc84dfdfdf"
        "3038002f2f2f5059164f4f4f6d762b6b6b6b88923e858585a0ab4f9d9d9db7c25fb3b3b3ccd86ec8c8c8"
        "e0ec7cdcdcdc482c002f2f2f694d144f4f4f866a266b6b6ba28638858585bb9f479d9d9dd2b656b3b3b3"
        "e8cc63c8c8c8fce070dcdcdc"
    ),
    "PAL": (
        "0000000000002b2b2b2b2b2b525252525252767676767676979797979797b6b6b6b6b6b6d2d2d2d2d2d2"
        "ecececececec0000000000002b2b2b2b2b2b525252525252767676767676979797979797b6b6b6b6b6b6"
        "d2d2d2d2d2d2ecececececec8058005a5a5a96711a727272ab8732888888be9c489d9d9dcfaf5cafafaf"
        "dfc06fc0c0c0eed180d0d0d0fce090dfdfdf445c004a4a4a5e791a6666667693327f7f7f8cac48979797"
        "a0c25cacacacb3d76fc0c0c0c4ea80d3d3d3d4fc90e4e4e470340040404089511a5b5b5ba06b32747474"
        "b684488c8c8cc99a5ca1a1a1dcaf6fb5b5b5ecc280c7c7c7fcd490d8d8d80064143d3d3d1a8035595959"
        "32985272727248b06e8989895cc5879f9f9f6fd99eb3b3b380ebb4c5c5c590fcc8d6d6d6700014242424"
        "891a353e3e3ea03252575757b6486e6d6d6dc95c87818181dc6f9e959595ec80b4a6a6a6fc90c8b7b7b7"
        "005c5c4040401a76765a5a5a328e8e72727248a4a48888885cb8b89c9c9c6fcbcbafafaf80dcdcc0c0c0"
        "90ececd0d0d070005c2c2c2c841a744444449632895a5a5aa8489e6e6e6eb75cb0818181c66fc1929292"
        "d380d1a2a2a2e090e0b1b1b1003c70303030195a894c4c4c2f75a0656565448eb67c7c7c57a5c9929292"
        "68badca5a5a579ceecb8b8b888e0fcc9c9c95800702727276e1a894040408332a05757579648b66c6c6c"
        "a75cc97f7f7fb76fdc919191c680eca1a1a1d490fcb1b1b1002070202020193f893c3c3c2f5aa0555555"
        "4474b66d6d6d578bc983838368a1dc97979779b5eca9a9a988c8fcbbbbbb3400801e1e1e4a1a96363636"
        "5f32ab4d4d4d7248be626262835ccf757575936fdf878787a280ee979797b090fca6a6a6000088101010"
        "1a1a9d2929293232b04040404848c25656565c5cd26969696f6fe17c7c7c8080ef8d8d8d9090fc9c9c9c"
        "0000000000002b2b2b2b2b2b525252525252767676767676979797979797b6b6b6b6b6b6d2d2d2d2d2d2"
        "ecececececec0000000000002b2b2b2b2b2b525252525252767676767676979797979797b6b6b6b6b6b6"
        "d2d2d2d2d2d2ecececececec"
    ),
    "SECAM": (
        "0000000000002121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9"
        "ffffffffffff0000000000002121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9"
        "ffff3fe9e9e9ffffffffffff0000000000002121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc"
        "7fffffd9d9d9ffff3fe9e9e9ffffffffffff0000000000002121ff3a3a3af03c79797979ff50ff989898"
        "7fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9ffffffffffff0000000000002121ff3a3a3af03c79797979"
        "ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9ffffffffffff0000000000002121ff3a3a3a"
        "f03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9ffffffffffff000000000000"
        "2121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9ffffffffffff"
        "0000000000002121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9"
        "ffffffffffff0000000000002121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9"
        "ffff3fe9e9e9ffffffffffff0000000000002121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc"
        "7fffffd9d9d9ffff3fe9e9e9ffffffffffff0000000000002121ff3a3a3af03c79797979ff50ff989898"
        "7fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9ffffffffffff0000000000002121ff3a3a3af03c79797979"
        "ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9ffffffffffff0000000000002121ff3a3a3a"
        "f03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9ffffffffffff000000000000"
        "2121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9ffffffffffff"
        "0000000000002121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9ffff3fe9e9e9"
        "ffffffffffff0000000000002121ff3a3a3af03c79797979ff50ff9898987fff00bcbcbc7fffffd9d9d9"
        "ffff3fe9e9e9ffffffffffff"
    ),
}


def palette_rgb(name: str) -> np.ndarray:
    """Palette ``name`` as uint8 ``(256, 3)`` RGB, one row per colour code."""
    packed = np.frombuffer(bytes.fromhex(PALETTES[name]), np.uint8).reshape(256, 3)
    return packed.copy()


def gray_table(name: str) -> np.ndarray:
    """uint8 ``(256,)``: the gray ALE's ``getScreenGrayscale`` shows for each code, in ``name``."""
    # ALE reads the entry after the code (the gray of an even code); its blue byte is the gray.
    return np.ascontiguousarray(np.roll(palette_rgb(name)[:, 2], -1))


def identify_palette(codes: np.ndarray, gray: np.ndarray) -> str | None:
    """The palette whose grays turn ``codes`` into ``gray``, if exactly one does.

    Args:
        codes: a frame's colour codes (ALE's ``getScreen``), uint8.
        gray: the same frame in ALE's gray (``getScreenGrayscale``), uint8, shaped as ``codes``.

    Returns:
        ``"NTSC"``, ``"PAL"`` or ``"SECAM"``; ``None`` when none or several agree (a frame
        of too few colours to tell them apart).
    """
    seen = np.unique(codes.ravel().astype(np.int64) * 256 + gray.ravel())
    code, value = seen // 256, seen % 256
    agree = [n for n in PALETTES if np.array_equal(gray_table(n)[code], value)]
    return agree[0] if len(agree) == 1 else None

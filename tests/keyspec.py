"""Independent enumerator of mmpose 0.x AE state_dict keys and shapes.

Written from the templates of reference.md §2.5 (not from aepose.models), it is the oracle
the model's state_dict is compared with. ``python tests/keyspec.py`` regenerates the
checked-in listings under tests/data/keys/.
"""

from __future__ import annotations

import sys
from pathlib import Path

Shape = tuple[int, ...]
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

LISTINGS = Path(__file__).parent / "data" / "keys"


def _bn(prefix: str, c: int) -> list[tuple[str, Shape]]:
    return [(f"{prefix}.{n}", () if n == "num_batches_tracked" else (c,)) for n in BN]


def _basic(prefix: str, c: int) -> list[tuple[str, Shape]]:
    return [
        (f"{prefix}.conv1.weight", (c, c, 3, 3)), *_bn(f"{prefix}.bn1", c),
        (f"{prefix}.conv2.weight", (c, c, 3, 3)), *_bn(f"{prefix}.bn2", c),
    ]


def backbone_keys(
    widths: tuple[int, ...], stem: int = 64, mid: int = 64, layer1_blocks: int = 4,
    blocks: int = 4, modules: tuple[int, int, int] = (1, 4, 3),
) -> list[tuple[str, Shape]]:
    """Keys of an HRNet whose branch widths are ``widths`` (4 entries)."""
    out: list[tuple[str, Shape]] = [
        ("backbone.conv1.weight", (stem, 3, 3, 3)), *_bn("backbone.bn1", stem),
        ("backbone.conv2.weight", (stem, stem, 3, 3)), *_bn("backbone.bn2", stem),
    ]
    wide = 4 * mid
    for k in range(layer1_blocks):
        p = f"backbone.layer1.{k}"
        cin = stem if k == 0 else wide
        out += [(f"{p}.conv1.weight", (mid, cin, 1, 1)), *_bn(f"{p}.bn1", mid)]
        out += [(f"{p}.conv2.weight", (mid, mid, 3, 3)), *_bn(f"{p}.bn2", mid)]
        out += [(f"{p}.conv3.weight", (wide, mid, 1, 1)), *_bn(f"{p}.bn3", wide)]
        if k == 0 and stem != wide:
            out += [(f"{p}.downsample.0.weight", (wide, stem, 1, 1)),
                    *_bn(f"{p}.downsample.1", wide)]
    previous = [wide]
    for stage in (2, 3, 4):
        c = list(widths[:stage])
        t = f"backbone.transition{stage - 1}"
        for b in range(stage):
            if b < len(previous):
                if previous[b] != c[b]:
                    out += [(f"{t}.{b}.0.weight", (c[b], previous[b], 3, 3)),
                            *_bn(f"{t}.{b}.1", c[b])]
            else:
                hops = b + 1 - len(previous)
                for h in range(hops):
                    cout = c[b] if h == hops - 1 else previous[-1]
                    out += [(f"{t}.{b}.{h}.0.weight", (cout, previous[-1], 3, 3)),
                            *_bn(f"{t}.{b}.{h}.1", cout)]
        count = modules[stage - 2]
        for m in range(count):
            p = f"backbone.stage{stage}.{m}"
            for b in range(stage):
                for k in range(blocks):
                    out += _basic(f"{p}.branches.{b}.{k}", c[b])
            outputs = 1 if (stage == 4 and m == count - 1) else stage
            for i in range(outputs):
                for j in range(stage):
                    f = f"{p}.fuse_layers.{i}.{j}"
                    if j > i:
                        out += [(f"{f}.0.weight", (c[i], c[j], 1, 1)), *_bn(f"{f}.1", c[i])]
                    elif j < i:
                        for s in range(i - j):
                            cout = c[i] if s == i - j - 1 else c[j]
                            out += [(f"{f}.{s}.0.weight", (cout, c[j], 3, 3)),
                                    *_bn(f"{f}.{s}.1", cout)]
        previous = c
    return out


def head_keys(c: int, k: int, higher: bool, blocks: int = 4) -> list[tuple[str, Shape]]:
    """Keys of AESimpleHead (``higher`` False) or AEHigherResolutionHead (tags on output 0)."""
    h = "keypoint_head"
    if not higher:
        return [(f"{h}.final_layer.weight", (2 * k, c, 1, 1)), (f"{h}.final_layer.bias", (2 * k,))]
    out: list[tuple[str, Shape]] = [
        (f"{h}.final_layers.0.weight", (2 * k, c, 1, 1)), (f"{h}.final_layers.0.bias", (2 * k,)),
        (f"{h}.final_layers.1.weight", (k, c, 1, 1)), (f"{h}.final_layers.1.bias", (k,)),
        (f"{h}.deconv_layers.0.0.0.weight", (c + 2 * k, c, 4, 4)),
        *_bn(f"{h}.deconv_layers.0.0.1", c),
    ]
    for b in range(1, blocks + 1):
        out += _basic(f"{h}.deconv_layers.0.{b}.0", c)
    return out


SEEDS = {
    "hrnet_w32_aic_512": backbone_keys((32, 64, 128, 256)) + head_keys(32, 14, higher=False),
    "higherhrnet_w32_crowdpose_512": backbone_keys((32, 64, 128, 256))
    + head_keys(32, 14, higher=True),
}


def format_listing(keys: list[tuple[str, Shape]]) -> str:
    """One ``key shape`` line per entry, e.g. ``backbone.conv1.weight [64,3,3,3]``."""
    return "".join(f"{k} [{','.join(map(str, s))}]\n" for k, s in keys)


if __name__ == "__main__":
    LISTINGS.mkdir(parents=True, exist_ok=True)
    for name, keys in SEEDS.items():
        (LISTINGS / f"{name}.txt").write_text(format_listing(keys))
        print(f"{name}: {len(keys)} entries", file=sys.stderr)

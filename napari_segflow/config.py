"""Frozen settings objects passed between the parts of the package.

Models take a ModelConfig, never an argparse namespace; presets are named ModelConfigs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from napari_segflow.errors import SegFlowError


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a SegFlow network. Two presets exist: ``small`` (CPU) and ``paper``.

    Strides: the segmentation encoder gives features at 4, 8, 16 and 32; score maps are read at 8, 16 and 32
    and summed (and at 4 when ``fine_scores``). ``flow_branch`` picks the flow side: ``flownets`` (the paper's
    FlowNetS, encoder down to stride 64; ``flow_encoder_channels``/``flow_decoder_channels``) or ``pwc`` (a
    cost-volume, coarse-to-fine branch, model/pwc.py; ``pwc_*`` settings). Each design ignores the other's settings.
    ``mask_prior``: the previous frame's mask, carried by the flow, is an input of the segmentation side
    (model/prior.py); without it the network is the paper's.
    """

    preset: str
    num_classes: int = 2
    seg_block: Literal["basic", "bottleneck"] = "basic"
    seg_stem_channels: int = 24
    seg_stage_channels: tuple[int, int, int, int] = (24, 48, 96, 160)
    seg_stage_blocks: tuple[int, int, int, int] = (1, 1, 2, 1)
    seg_head_channels: int = 48
    flow_encoder_channels: tuple[int, int, int, int, int, int] = (24, 48, 96, 128, 160, 192)
    flow_decoder_channels: tuple[int, int, int, int] = (128, 96, 64, 32)
    bridge_channels: int = 24
    memory_channels: int = 32
    memory_kernel: int = 3
    seg_to_flow_bridges: bool = True
    flow_to_seg_bridges: bool = True
    div_flow: float = 20.0
    fine_scores: bool = False
    flow_branch: Literal["flownets", "pwc"] = "flownets"
    pwc_pyramid_channels: tuple[int, int, int, int, int] = (12, 16, 24, 32, 48)
    pwc_estimator_channels: tuple[int, int, int] = (48, 32, 24)
    pwc_coarse_radius: int = 4
    pwc_radius: int = 3
    mask_prior: bool = False

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise SegFlowError(
                f"ModelConfig.num_classes must be at least 2 (background + 1 object), got {self.num_classes}"
            )
        if self.seg_block not in ("basic", "bottleneck"):
            raise SegFlowError(f"ModelConfig.seg_block must be 'basic' or 'bottleneck', got {self.seg_block!r}")
        if self.flow_branch not in ("flownets", "pwc"):
            raise SegFlowError(f"ModelConfig.flow_branch must be 'flownets' or 'pwc', got {self.flow_branch!r}")
        if self.mask_prior and not self.fine_scores:
            raise SegFlowError("ModelConfig.mask_prior needs fine_scores: the prior corrects the stride-4 scores")
        if self.memory_kernel % 2 != 1:
            raise SegFlowError(f"ModelConfig.memory_kernel must be odd, got {self.memory_kernel}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SegFlowError(f"{source}: unknown model setting(s) {', '.join(unknown)}")
        values = {**LATER_SETTINGS, **values}
        missing = sorted(known - set(values))
        if missing and set(missing) <= COST_VOLUME_SETTINGS and "flow_branch" in missing:
            raise SegFlowError(
                f"{source}: this checkpoint holds the old FlowNetS flow branch of preset {values.get('preset')!r}, "
                "saved before the cost-volume branch (it has no flow_branch setting); the 'small' preset now uses "
                "flow_branch 'pwc', whose weights differ. Use weights trained with this version (the shipped "
                "small.pt) or retrain (tools/train_small.sh)"
            )
        if missing:
            raise SegFlowError(f"{source}: missing model setting(s) {', '.join(missing)}")
        as_tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**as_tuples)


#: Settings added after checkpoints were shipped, with the value that reproduces those checkpoints.
LATER_SETTINGS = {"mask_prior": False}

#: Settings the cost-volume flow branch added; a checkpoint without any of them predates it.
COST_VOLUME_SETTINGS = frozenset(
    {"flow_branch", "pwc_pyramid_channels", "pwc_estimator_channels", "pwc_coarse_radius", "pwc_radius"}
)

PRESETS: dict[str, ModelConfig] = {
    # Sized for two CPU cores: under 8 M parameters, a 448x256 frame pair well under 100 ms.
    "small": ModelConfig(preset="small", fine_scores=True, flow_branch="pwc", mask_prior=True),
    # SegFlow as published: ResNet-101 segmentation branch, full FlowNetS, 7x7 ConvGRU with 64 channels.
    "paper": ModelConfig(
        preset="paper",
        seg_block="bottleneck",
        seg_stem_channels=64,
        seg_stage_channels=(64, 128, 256, 512),
        seg_stage_blocks=(3, 4, 23, 3),
        seg_head_channels=256,
        flow_encoder_channels=(64, 128, 256, 512, 512, 1024),
        flow_decoder_channels=(512, 256, 128, 64),
        bridge_channels=64,
        memory_channels=64,
        memory_kernel=7,
    ),
}


def preset_config(name: str, **overrides: Any) -> ModelConfig:
    """The named preset with some settings replaced."""
    if name not in PRESETS:
        raise SegFlowError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SegFlowError(f"unknown model setting(s) for preset {name!r}: {', '.join(unknown)}")
    # settings read from YAML arrive as lists
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(PRESETS[name], **overrides)

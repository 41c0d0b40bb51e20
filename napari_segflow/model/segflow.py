"""SegFlowNet: the two branches, their bridges, the ConvGRU memory, and stage methods.

There is no monolithic forward. Per frame t with a partner frame t' (usually t + 1):

    appearance = net.encode_appearance(frame_t)
    flow = net.estimate_flow(frame_t, frame_t', appearance)     # seg -> flow bridges inside
    fused = net.fuse(appearance, flow, prior)                    # flow -> seg bridges, mask prior inside
    hidden, gates = net.memory(fused.memory_input, hidden)
    logits = net.readout(fused, hidden)                          # (B, K+1, H, W)

``step`` chains these for one frame; ``segment_clip`` runs a clip, one way or both ways.
Inputs are (B, 3, H, W) float images in [0, 1] with H and W multiples of 64. With ``config.mask_prior`` a
frame also takes a prior (model/prior.py): its mask as carried from the frame before, or zeros when unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from napari_segflow.config import ModelConfig, preset_config
from napari_segflow.errors import SegFlowError
from napari_segflow.model.backbone import AppearanceFeatures, ResidualEncoder
from napari_segflow.model.flow_estimate import FlowEstimate
from napari_segflow.model.flownet import FlowNetS
from napari_segflow.model.fusion import Bridge
from napari_segflow.model.heads import FusedFeatures, MemoryReadout, ScoreHeads
from napari_segflow.model.memory import ConvGRUCell, GateActivations
from napari_segflow.model.prior import MaskPrior, empty_prior
from napari_segflow.model.pwc import PWCFlow

#: Input height and width must be multiples of this (the flow encoder's deepest stride).
INPUT_MULTIPLE = 64


@dataclass
class FrameOutput:
    """One frame: logits (B, K+1, H, W), its flow estimate, the memory state after it, and gates if asked."""

    logits: torch.Tensor
    flow: FlowEstimate
    hidden: torch.Tensor
    gates: GateActivations | None


@dataclass
class ClipOutput:
    """A clip of T frames: logits (B, T, K+1, H, W); per-frame flow estimates; per-frame gates
    (forward sweep, and backward sweep when bidirectional) when asked."""

    logits: torch.Tensor
    flows: list[FlowEstimate]
    gates_forward: list[GateActivations | None]
    gates_backward: list[GateActivations | None] | None


class SegFlowNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.appearance_encoder = ResidualEncoder(config)
        seg_channels = self.appearance_encoder.out_channels  # strides 4, 8, 16, 32
        extra = config.bridge_channels if config.seg_to_flow_bridges else 0
        self.flow_branch = (PWCFlow if config.flow_branch == "pwc" else FlowNetS)(config, extra)
        # seg stage at stride s feeds the flow decoder level at stride s
        self.seg_to_flow = (
            nn.ModuleDict(
                {
                    str(s): Bridge(seg_channels[_stage_index(s)], config.bridge_channels)
                    for s in self.flow_branch.fused_strides
                }
            )
            if config.seg_to_flow_bridges
            else None
        )
        self.score_heads = ScoreHeads(
            fine_channels=seg_channels[0] if config.fine_scores else 0,
            appearance_channels=seg_channels[1:],
            flow_channels=self.flow_branch.decoder_channels if config.flow_to_seg_bridges else None,
            head_channels=config.seg_head_channels,
            bridge_channels=config.bridge_channels,
            memory_channels=config.memory_channels,
            num_classes=config.num_classes,
        )
        self.mask_prior = (
            MaskPrior(config.seg_head_channels, config.memory_channels) if config.mask_prior else None
        )
        self.memory = ConvGRUCell(config.memory_channels, config.memory_channels, config.memory_kernel)
        self.readout_head = MemoryReadout(config.memory_channels, config.num_classes)

    # -- stages ---------------------------------------------------------------------------------

    def encode_appearance(self, image: torch.Tensor) -> AppearanceFeatures:
        """image (B, 3, H, W) in [0, 1] -> features at strides 4, 8, 16, 32."""
        check_input_size(image)
        return self.appearance_encoder(image)

    def estimate_flow(
        self, image: torch.Tensor, next_image: torch.Tensor, appearance: AppearanceFeatures | None = None
    ) -> FlowEstimate:
        """Flow from ``image`` to ``next_image``, both (B, 3, H, W) in [0, 1]. ``appearance`` of ``image``
        feeds the seg -> flow bridges; it is computed when not given."""
        check_input_size(image)
        if image.shape != next_image.shape:
            raise SegFlowError(f"frame pair shapes differ: {tuple(image.shape)} vs {tuple(next_image.shape)}")
        extras: dict[int, torch.Tensor] = {}
        if self.seg_to_flow is not None:
            if appearance is None:
                appearance = self.encode_appearance(image)
            by_stride = {8: appearance.s8, 16: appearance.s16, 32: appearance.s32}
            height, width = image.shape[-2:]
            extras = {
                s: self.seg_to_flow[str(s)](by_stride[s], (height // s, width // s))
                for s in self.flow_branch.fused_strides
            }
        return self.flow_branch(image, next_image, extras)

    def fuse(
        self, appearance: AppearanceFeatures, flow: FlowEstimate, prior: torch.Tensor | None = None
    ) -> FusedFeatures:
        """Score heads over appearance and flow features; with a mask prior (B, K+1, H/4, W/4), its features join
        the memory input and its corrections the stride-4 scores (None: nothing known). Networks without
        ``mask_prior`` ignore ``prior``."""
        decoder = flow.decoder if self.config.flow_to_seg_bridges else None
        fused = self.score_heads(appearance.s4, (appearance.s8, appearance.s16, appearance.s32), decoder)
        if self.mask_prior is None:
            return fused
        if prior is None:
            size4 = tuple(s * 4 for s in appearance.s4.shape[-2:])
            prior = empty_prior(appearance.s4.shape[0], self.config.num_classes, size4, appearance.s4)
        prior = prior.to(fused.fine.dtype)
        return replace(
            fused,
            memory_input=fused.memory_input
            + self.mask_prior.memory_features(prior, tuple(fused.memory_input.shape[-2:])),
            score4=fused.score4 + self.mask_prior.score_correction(prior, fused.fine),
        )

    def readout(
        self,
        fused: FusedFeatures,
        hidden: torch.Tensor,
        hidden_backward: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Sum the stride-8 memory scores with the upsampled 16 and 32 scores (FCN-8s), then, with a stride-4
        head, upsample that sum and add the stride-4 scores (FCN-4s); logits at ``size`` (default: 8x the
        memory resolution)."""
        score8 = self.readout_head(hidden, hidden_backward)
        size8 = tuple(score8.shape[-2:])
        logits = (
            score8
            + F.interpolate(fused.score16, size=size8, mode="bilinear", align_corners=False)
            + F.interpolate(fused.score32, size=size8, mode="bilinear", align_corners=False)
        )
        if fused.score4 is not None:
            logits = fused.score4 + F.interpolate(
                logits, size=tuple(fused.score4.shape[-2:]), mode="bilinear", align_corners=False
            )
        if size is None:
            size = (size8[0] * 8, size8[1] * 8)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    # -- compositions ---------------------------------------------------------------------------

    def step(
        self,
        image: torch.Tensor,
        next_image: torch.Tensor,
        hidden: torch.Tensor | None = None,
        return_gates: bool = False,
        prior: torch.Tensor | None = None,
    ) -> FrameOutput:
        """One frame of one-way propagation: segment ``image`` (flow towards ``next_image``) given its mask
        ``prior`` (see ``fuse``), update the memory."""
        appearance = self.encode_appearance(image)
        flow = self.estimate_flow(image, next_image, appearance)
        fused = self.fuse(appearance, flow, prior)
        hidden, gates = self.memory(fused.memory_input, hidden, return_gates)
        logits = self.readout(fused, hidden, size=tuple(image.shape[-2:]))
        return FrameOutput(logits=logits, flow=flow, hidden=hidden, gates=gates)

    def segment_clip(
        self,
        frames: torch.Tensor,
        bidirectional: bool = False,
        return_gates: bool = False,
        partners: list[int] | None = None,
        priors: torch.Tensor | None = None,
        flow_gradients: bool = True,
    ) -> ClipOutput:
        """frames (B, T, 3, H, W), T >= 2. Frame t's flow goes to frame ``partners[t]``: by default t + 1
        (the last frame: t - 1). Pairing a frame with itself gives the flow branch no motion to see.
        ``priors`` (B, T, K+1, H/4, W/4): each frame's mask prior (training gives deformed true masks), or None.
        ``flow_gradients`` False runs the flow branch without recording gradients: its outputs feed the
        segmentation side as constants (enough when the flow branch is frozen, and it saves its backward pass)."""
        if frames.ndim != 5 or frames.shape[1] < 2:
            raise SegFlowError(f"segment_clip needs frames shaped (B, T>=2, 3, H, W), got {tuple(frames.shape)}")
        count = frames.shape[1]
        if partners is None:
            partners = clip_partners(count)
        size = tuple(frames.shape[-2:])
        flows, fused_all = [], []
        for t in range(count):
            partner = partners[t]
            appearance = self.encode_appearance(frames[:, t])
            with torch.set_grad_enabled(flow_gradients and torch.is_grad_enabled()):
                flow = self.estimate_flow(frames[:, t], frames[:, partner], appearance)
            flows.append(flow)
            fused_all.append(self.fuse(appearance, flow, priors[:, t] if priors is not None else None))
        inputs = [f.memory_input for f in fused_all]
        forward, gates_forward = self.memory.run(inputs, reverse=False, return_gates=return_gates)
        backward, gates_backward = (None, None)
        if bidirectional:
            backward, gates_backward = self.memory.run(inputs, reverse=True, return_gates=return_gates)
        logits = [
            self.readout(fused_all[t], forward[t], backward[t] if backward is not None else None, size)
            for t in range(count)
        ]
        return ClipOutput(
            logits=torch.stack(logits, dim=1), flows=flows, gates_forward=gates_forward, gates_backward=gates_backward
        )

    # -- objects --------------------------------------------------------------------------------

    def set_num_objects(self, num_objects: int) -> None:
        """Resize the three classifiers to background + ``num_objects`` classes. Background keeps its
        weights, existing objects keep theirs, and each new object starts from the last existing
        foreground class (the binary offline model's "foreground")."""
        if num_objects < 1:
            raise SegFlowError(f"the number of objects must be at least 1, got {num_objects}")
        num_classes = num_objects + 1
        if num_classes == self.config.num_classes:
            return
        # the mask prior is class-agnostic: it needs no resizing
        for owner, name in (
            *(((self.score_heads, "score4"),) if self.score_heads.score4 is not None else ()),
            (self.score_heads, "score16"),
            (self.score_heads, "score32"),
            (self.readout_head, "classifier"),
        ):
            setattr(owner, name, _resized_classifier(getattr(owner, name), num_classes))
        self.config = replace(self.config, num_classes=num_classes)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def clip_partners(count: int) -> list[int]:
    """The frame whose flow each frame of a ``count``-frame clip sees by default: the next one (the last: the one
    before it)."""
    return [t + 1 if t + 1 < count else t - 1 for t in range(count)]


def _stage_index(stride: int) -> int:
    return {4: 0, 8: 1, 16: 2, 32: 3}[stride]


def _resized_classifier(old: nn.Conv2d, num_classes: int) -> nn.Conv2d:
    new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride, old.padding).to(old.weight.device)
    source_rows = [min(k, old.out_channels - 1) for k in range(num_classes)]
    with torch.no_grad():
        new.weight.copy_(old.weight[source_rows])
        new.bias.copy_(old.bias[source_rows])
    return new


def check_input_size(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 3:
        raise SegFlowError(f"expected images shaped (B, 3, H, W), got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE:
        raise SegFlowError(
            f"image size {height}x{width} is not a multiple of {INPUT_MULTIPLE}; pad it first "
            "(napari_segflow.data.resolution.WorkingResolution does this)"
        )


def build_segflow(preset: str = "small", **overrides) -> SegFlowNet:
    """A freshly initialised SegFlowNet from a named preset with some settings replaced."""
    return SegFlowNet(preset_config(preset, **overrides))

"""Propagation: walk the frames with the ConvGRU memory, yielding one FrameResult per frame.

One way, the memory runs along ``order``. Both ways (Tokmakov et al. §5.1), a first sweep runs the memory
along ``order`` and keeps only its hidden state per frame (float16, on the CPU: about 115 kB a frame at the
default working size), then a second sweep runs it against ``order`` and reads both states out. The first
sweep's one-way results are yielded too (``final=False``), so a viewer shows progress and a cancelled run
still leaves every frame it reached segmented; the second sweep's results replace them.

Each frame is expected to look like the mask of the frame before it in ``order`` carried by that frame's flow
(the first frame: its annotation, when one is given). A network with a mask prior (model/prior.py) takes that as
its prior. Every result carries an attention score: how unsure the network is of the object, weighed by the
frames the mask was carried over (inference/attention.py). The second sweep reuses the expectations of the
first.

Between two user frames (``propagate_between``), each one's mask is carried over the stretch, one forward and one
backward, and each frame fuses the two by nearness; which stretches a run walks after the user's frames changed is
``correction_stretches``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from napari_segflow.data.resolution import WorkingResolution
from napari_segflow.device import autocast
from napari_segflow.errors import SegFlowError
from napari_segflow.inference.attention import attention_score
from napari_segflow.inference.carried_results import CarriedResults
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.inference.refine import EDGE_RADIUS, GuidedFilter, edge_filter, refine_probabilities
from napari_segflow.model.prior import carry_prior, prior_from_labels, prior_from_logits
from napari_segflow.model.segflow import FrameOutput, SegFlowNet
from napari_segflow.objects import ObjectChannels


def frame_order(count: int, start: int, direction: str, stop: int | None = None) -> list[int]:
    """Frame indices from ``start`` towards ``stop`` (inclusive; default: the video's end) one way."""
    if not 0 <= start < count:
        raise SegFlowError(f"start frame {start} is out of range (0..{count - 1})")
    if direction == "forward":
        end = count - 1 if stop is None else stop
        return list(range(start, end + 1))
    if direction == "backward":
        end = 0 if stop is None else stop
        return list(range(start, end - 1, -1))
    raise SegFlowError(f"direction must be 'forward' or 'backward', got {direction!r}")


def correction_orders(annotated: list[int], changed: list[int], count: int) -> list[list[int]]:
    """The frame orders of a carrier without probabilities (the DIS peer of the interactive bench) after the user
    frames ``changed`` (a subset of ``annotated``) were made or changed: every frame takes its mask from the
    nearest user frame (the earlier one on a tie), so from each changed frame forward up to halfway to the next
    user frame (or the video's end) and backward down to just past halfway to the previous one (or the start).
    Frames nearer an unchanged user frame keep what it gave them: the errors a mask gathers grow with the frames it
    was carried over (on the validation sequences, DIS warping restarted this way gained 4 to 27 points more after
    five corrections than restarted up to the neighbouring user frames). Two binary masks fused by distance, as the
    session fuses its probabilities (``propagate_between``), give the nearer one: the same rule."""
    annotated = sorted(annotated)
    orders = []
    for k in changed:
        later = [t for t in annotated if t > k]
        earlier = [t for t in annotated if t < k]
        orders.append(frame_order(count, k, "forward", (k + later[0]) // 2 if later else None))
        backward = frame_order(count, k, "backward", (earlier[-1] + k) // 2 + 1 if earlier else None)
        if len(backward) > 1:
            orders.append(backward)
    return orders


@dataclass(frozen=True)
class Stretch:
    """Frames a run brings up to date, ``start`` to ``stop`` inclusive, ``start`` a user frame (or the frame a
    propagation starts from). ``between``: ``stop`` > ``start`` is a user frame too, and each frame between them
    fuses the masks carried from both (``propagate_between``); else the mask is carried one way, from ``start``
    towards ``stop``."""

    start: int
    stop: int
    between: bool = False

    @property
    def orders(self) -> list[list[int]]:
        """The frame orders propagation walks: both ways between user frames, else one."""
        if self.between:
            return [list(range(self.start, self.stop + 1)), list(range(self.stop, self.start - 1, -1))]
        step = 1 if self.stop >= self.start else -1
        return [list(range(self.start, self.stop + step, step))]


def correction_stretches(annotated: list[int], changed: list[int], count: int, removed=()) -> list[Stretch]:
    """The stretches that bring a ``count``-frame video's masks up to date after the user frames ``changed`` (a
    subset of ``annotated``) were made or changed and the frames ``removed`` stopped being user frames: on each
    side of a changed frame, up to the neighbouring user frame (carried from both and fused) or to the video's
    end; across a removed frame, from the user frame before it to the one after it (or to the video's end).
    Stretches between two unchanged user frames keep their masks. Why both: on the validation sequences (three
    corrections at evenly spaced frames, eight fine-tune seeds; README), fusing gained 0.75 points J&F (standard
    error 0.10) over taking each frame from its nearest user frame alone, most where the object moves fast."""
    annotated = sorted(annotated)
    stretches: list[Stretch] = []
    for k in changed:
        later = [t for t in annotated if t > k]
        earlier = [t for t in annotated if t < k]
        if later:
            sides = [Stretch(k, later[0], between=True)]
        else:
            sides = [Stretch(k, count - 1)] if k < count - 1 or k == 0 else []
        if earlier:
            sides.append(Stretch(earlier[-1], k, between=True))
        elif k > 0:
            sides.append(Stretch(k, 0))
        stretches += [side for side in sides if side not in stretches]
    for k in removed:
        later = [t for t in annotated if t > k]
        earlier = [t for t in annotated if t < k]
        if earlier and later:
            across = Stretch(earlier[-1], later[0], between=True)
        else:
            across = Stretch(earlier[-1], count - 1) if earlier else Stretch(later[0], 0)
        if across not in stretches:
            stretches.append(across)
    return stretches


def expected_results(stretches: list[Stretch], sweeps: int) -> int:
    """How many FrameResults a session's walk over ``stretches`` yields, each memory sweep (``sweeps``: 1, or 2
    with two-way memory) yielding every frame of every order, except frames an earlier stretch made final."""
    final: set[int] = set()
    count = 0
    for stretch in stretches:
        count += sweeps * sum(t not in final for order in stretch.orders for t in order)
        final.update(stretch.orders[0])
    return count


class _FrameFeeder:
    """Frames read once while they are needed (a frame and its partner): as read, and at the working
    resolution."""

    def __init__(self, frames, geometry: WorkingResolution, device) -> None:
        self.frames, self.geometry, self.device = frames, geometry, device
        self.raw: dict[int, np.ndarray] = {}
        self.cache: dict[int, torch.Tensor] = {}

    def pair(self, index: int, partner: int) -> tuple[torch.Tensor, torch.Tensor]:
        for stale in [k for k in self.cache if k not in (index, partner)]:
            del self.cache[stale], self.raw[stale]
        for k in (index, partner):
            if k not in self.cache:
                self.raw[k] = self.frames[k]
                self.cache[k] = self.geometry.frames_to_network(self.raw[k], self.device)
        return self.cache[index], self.cache[partner]


def _partners(order: list[int], count: int, motion_features: bool) -> list[int]:
    """Each frame's flow partner: the next frame in ``order`` (the last: the one before it)."""
    if not motion_features:
        return list(order)
    if len(order) == 1:
        index = order[0]
        return [index + 1 if index + 1 < count else max(index - 1, 0)]
    return [order[p + 1] if p + 1 < len(order) else order[p - 1] for p in range(len(order))]


def _result(index, logits, output: FrameOutput, objects, geometry, frame, edges: GuidedFilter | None, final=True,
            attention=0.0) -> FrameResult:
    probabilities = torch.softmax(geometry.logits_to_frame(logits.float()), dim=1)[0]
    if edges is not None:
        frame = torch.as_tensor(frame, device=probabilities.device)
        probabilities = refine_probabilities(probabilities, frame, edges)
    # max(dim).indices, not argmax(dim): torch's CPU argmax over the leading dimension of a (K+1, H, W) map
    # took 35-70 ms a frame at 854x480, the max about 1 ms
    channels = probabilities.max(0).indices.cpu().numpy()
    flow = geometry.flow_to_working_grid(output.flow.flow.float())[0].permute(1, 2, 0).cpu().numpy()
    return FrameResult(
        index=index,
        labels=objects.to_ids(channels),
        probabilities=probabilities.half().cpu().numpy(),
        working_flow=flow.astype(np.float32),
        final=final,
        attention=attention,
    )


def _check_objects(net: SegFlowNet, objects: ObjectChannels) -> None:
    if net.config.num_classes != objects.num_objects + 1:
        raise SegFlowError(
            f"the network predicts {net.config.num_classes - 1} object(s) but {objects.num_objects} are asked for"
        )


@torch.no_grad()
def propagate(
    net: SegFlowNet,
    frames,
    objects: ObjectChannels,
    order: list[int],
    geometry: WorkingResolution,
    device: torch.device | str = "cpu",
    motion_features: bool = True,
    bidirectional: bool = False,
    refine_edges: bool = True,
    refine_radius: int = EDGE_RADIUS,
    start_labels: np.ndarray | None = None,
    mask_prior: bool = True,
) -> Iterator[FrameResult]:
    """Segment ``frames`` (lazy (T, H, W, 3) uint8) in ``order``, carrying the memory from frame to frame;
    ``bidirectional`` adds the sweep back (results yielded twice, see the module's docstring);
    ``refine_edges`` snaps the probabilities' edges to the frame's (``refine.py``; ``refine_radius`` in
    working-resolution pixels). ``start_labels`` (H, W) object ids: the first frame's annotation, the first
    mask prior; ``mask_prior`` False runs a prior network without priors (an ablation)."""
    _check_objects(net, objects)
    edges = edge_filter(geometry, refine_radius) if refine_edges else None
    device = torch.device(device)
    net.eval()
    feeder = _FrameFeeder(frames, geometry, device)
    partners = _partners(order, len(frames), motion_features)
    carry = mask_prior and net.mask_prior is not None
    # what each frame is expected to look like: the frame before it carried by the flow (the first: its
    # annotation); the mask prior of a prior network, and the reference of the attention score
    expected = None
    if start_labels is not None:
        channels = geometry.labels_to_network(objects.to_channels(start_labels, "start labels"), device)
        expected = prior_from_labels(channels, net.config.num_classes)
    hidden = None
    forward_states: list[torch.Tensor] = []
    forward_expected: list[torch.Tensor | None] = []
    for position, (index, partner) in enumerate(zip(order, partners)):
        with autocast(device):
            output = net.step(*feeder.pair(index, partner), hidden, prior=expected if carry else None)
        hidden = output.hidden
        if bidirectional:
            forward_states.append(hidden.to("cpu", torch.float16))
            forward_expected.append(expected.to("cpu", torch.float16) if expected is not None else None)
        current = prior_from_logits(output.logits)
        attention = attention_score(current, position)
        source = expected if position == 0 and start_labels is not None else current
        expected = carry_prior(source, output.flow.flow) if motion_features else source
        yield _result(index, output.logits, output, objects, geometry, feeder.raw[index], edges,
                      final=not bidirectional, attention=attention)
    if not bidirectional:
        return
    hidden = None
    for position in reversed(range(len(order))):
        index, partner = order[position], partners[position]
        image, partner_image = feeder.pair(index, partner)
        expected = forward_expected[position]
        expected = expected.to(device).float() if expected is not None else None
        with autocast(device):
            appearance = net.encode_appearance(image)
            flow = net.estimate_flow(image, partner_image, appearance)
            fused = net.fuse(appearance, flow, expected if carry else None)
            hidden, _ = net.memory(fused.memory_input, hidden)
            forward = forward_states[position].to(device, hidden.dtype)
            logits = net.readout(fused, forward, hidden, size=tuple(image.shape[-2:]))
        output = FrameOutput(logits=logits, flow=flow, hidden=hidden, gates=None)
        attention = attention_score(prior_from_logits(logits), position)
        yield _result(index, logits, output, objects, geometry, feeder.raw[index], edges, attention=attention)


def propagate_between(
    net: SegFlowNet,
    frames,
    objects: ObjectChannels,
    first: int,
    last: int,
    geometry: WorkingResolution,
    device: torch.device | str = "cpu",
    first_labels: np.ndarray | None = None,
    last_labels: np.ndarray | None = None,
    scratch: str | Path | None = None,
    **options,
) -> Iterator[FrameResult]:
    """Frames ``first`` to ``last`` (two user frames, ``first`` < ``last``, with their labels): each user's mask
    carried over the stretch, forward from ``first`` and backward from ``last`` (``propagate``, with its
    ``options``), and each frame's probabilities fused from both by its distances to them: linearly, so next to
    a user frame mostly that frame's carry. The forward carry's results come first with ``final=False`` (a
    cancelled run keeps them), then the backward carry's: its first memory sweep's with ``final=False``, the
    fused ones final. Until fused, the forward results wait on disk (``CarriedResults``, in a temporary folder
    under ``scratch``: the system's temporary folder when None), so memory does not grow with the stretch."""
    if not 0 <= first < last < len(frames):
        raise SegFlowError(f"a stretch between user frames needs 0 <= first < last < {len(frames)}, got "
                           f"{first} and {last}")
    with CarriedResults(scratch) as forward:
        for result in propagate(net, frames, objects, list(range(first, last + 1)), geometry, device,
                                start_labels=first_labels, **options):
            if result.final:
                forward.put(result)
            yield replace(result, final=False)
        for result in propagate(net, frames, objects, list(range(last, first - 1, -1)), geometry, device,
                                start_labels=last_labels, **options):
            yield fuse_results(forward.pop(result.index), result, first, last, objects) if result.final else result


def fuse_results(forward: FrameResult, backward: FrameResult, first: int, last: int,
                 objects: ObjectChannels) -> FrameResult:
    """One frame's result from the masks carried to it from user frames ``first`` (``forward``) and ``last``
    (``backward``): probabilities weighed by nearness, labels their most likely object, the flow the forward
    carry's (to the next frame, as a one-way run forward shows it). The attention score keeps its meaning (the
    unsure share times the frames carried, plus one): the unsure shares weighed alike, times the frames from
    the nearer user frame."""
    index = forward.index
    weight = (index - first) / (last - first)  # the backward carry's share
    probabilities = ((1 - weight) * forward.probabilities.astype(np.float32)
                     + weight * backward.probabilities.astype(np.float32))
    unsure = ((1 - weight) * forward.attention / (index - first + 1)
              + weight * backward.attention / (last - index + 1))
    return FrameResult(
        index=index,
        labels=objects.to_ids(probabilities.argmax(0)),
        probabilities=probabilities.astype(np.float16),
        working_flow=forward.working_flow,
        final=True,
        attention=unsure * (min(index - first, last - index) + 1),
    )

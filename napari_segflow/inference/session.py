"""VideoSession: one video's annotation work — frames, the user's annotations, the objects, a fine-tuned copy
of the weights, the results — kept in one folder that is written as the work happens.

The folder::

    session.json                 the video, its size, settings, objects, what was fine-tuned and propagated
    annotations/<t>.png          the user's label images (indexed PNG), one per annotated frame
    results/labels/<t>.png       propagated labels, written as each frame is produced
    results/flow/<t>.npy         the flow branch's flow (float16, frame pixels) on the working grid it was
                                 computed on (``flow()`` resizes it to the frame), when ``keep_flow``
    results/confidence/<t>.png   each pixel's largest class probability (8-bit grey) on the working grid
                                 (``confidence()`` resizes it to the frame), when ``keep_confidence``
    results/attention.json       each propagated frame's attention score (inference/attention.py), after a run
    finetuned.pt                 the fine-tuned weights (strict checkpoint)
    undo/<serial>/               what each change overwrote (see ``journal.py``)

Long work (``finetune``, ``propagate``, ``run``) is a generator: iterate it to do the work, close it to
cancel between steps. A cancelled fine-tune leaves the weights as they were; a cancelled or failed
propagation keeps every frame it wrote, and ``undo()`` takes the whole run back.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from napari_segflow.checkpoint import SHIPPED_WEIGHTS, load_checkpoint, save_checkpoint
from napari_segflow.data.augment import AffineRanges, DeformationRanges
from napari_segflow.data.io import (
    open_video,
    read_grey_png,
    read_label_image,
    read_npy,
    write_grey_png,
    write_label_png,
    write_npy,
    write_text,
)
from napari_segflow.data.resolution import DEFAULT_LONG_SIDE, WorkingResolution, resize_flow, resize_map
from napari_segflow.device import (
    choose_device, is_out_of_memory, out_of_memory_error, place_for_training, place_model,
)
from napari_segflow.errors import SegFlowError
from napari_segflow.inference.carried_results import remove_leftovers
from napari_segflow.inference.frame_result import FrameResult
from napari_segflow.inference.journal import Entry, Journal
from napari_segflow.inference.mask_carry import UserMaskCarrier
from napari_segflow.inference.propagation import (
    Stretch, correction_stretches, expected_results, frame_order, propagate, propagate_between,
)
from napari_segflow.model.segflow import SegFlowNet
from napari_segflow.objects import ObjectChannels
from napari_segflow.training.mask_priors import PriorDeformation
from napari_segflow.training.online import FinetuneConfig, FinetuneStep, finetune, prepare_annotations

SESSION_FILE = "session.json"
ATTENTION_FILE = "results/attention.json"
FORMAT_VERSION = 1
DIRECTIONS = ("forward", "backward", "both")
SESSION_FINETUNE_SECONDS = 50.0
#: the least a correction's fine-tune gets when a long re-propagation would eat the correction round's seconds
MIN_CORRECTION_SECONDS = 10.0


@dataclass(frozen=True)
class SessionSettings:
    """How a session works. ``finetune`` is the first fine-tune; a correction warm-starts from the last one
    for ``correction_steps`` steps or ``correction_time_budget`` seconds, whichever ends first; and, when
    ``correction_round_seconds`` is set, for no longer than the seconds the round's re-propagation leaves of it
    (at the session's measured pace; at least ``MIN_CORRECTION_SECONDS``)."""

    long_side: int = DEFAULT_LONG_SIDE
    # 50 s rather than the fine-tune's own 60: fine-tune plus propagation of a short clip stays under a minute
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(time_budget=SESSION_FINETUNE_SECONDS))
    correction_steps: int = 50
    correction_time_budget: float | None = 20.0
    # a correction round (re-fine-tune + re-propagation) on a 70-frame clip is to stay under 30 s on two cores;
    # on a slow machine the 20 s fine-tune and a long re-propagation passed it. The estimate from the last
    # propagation's pace runs a second or two short (at 28 s the simulated annotator's rounds reached 30.0 s)
    correction_round_seconds: float | None = 27.0
    # corrections keep the batch and rate their step count and budget were measured with (the interactive bench);
    # the first fine-tune's smaller, faster steps were chosen on first-frame fine-tunes only
    correction_batch_size: int = 2
    correction_learning_rate: float = 5e-4
    bidirectional: bool = False
    refine_edges: bool = True
    keep_flow: bool = True
    keep_confidence: bool = True
    # the user's masks carried a few frames by DIS flow where it passes a forward-backward check (needs OpenCV)
    carry_user_masks: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("correction_time_budget", "correction_round_seconds"):
            value = getattr(self, name)
            if value is not None and not (0 < value < float("inf")):
                raise SegFlowError(f"{name} must be a positive number of seconds or None, got {value!r}")

    @property
    def sweeps(self) -> int:
        """How many results propagation yields for each frame: two with the two-way memory (the first sweep's
        one-way result, then the final one)."""
        return 2 if self.bidirectional else 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SessionSettings:
        values = dict(values)
        tune = dict(values.pop("finetune"))
        tune["affine"] = AffineRanges(**_tuples(tune["affine"]))
        tune["deformation"] = DeformationRanges(**_tuples(tune["deformation"]))
        if "prior_deformation" in tune:  # sessions saved before the mask prior have none: the default
            tune["prior_deformation"] = PriorDeformation(**tune["prior_deformation"])
        return cls(finetune=FinetuneConfig(**tune), **values)

    def first_finetune(self) -> FinetuneConfig:
        return replace(self.finetune, long_side=self.long_side)

    def correction_finetune(self, propagation_seconds: float | None = None) -> FinetuneConfig:
        """The correction's fine-tune, given the seconds its re-propagation is expected to take (None: unknown)."""
        return replace(
            self.finetune, long_side=self.long_side, steps=self.correction_steps,
            time_budget=self._correction_seconds(propagation_seconds), batch_size=self.correction_batch_size,
            learning_rate=self.correction_learning_rate,
        )

    def _correction_seconds(self, propagation_seconds: float | None) -> float | None:
        budget = self.correction_time_budget
        if self.correction_round_seconds is None or propagation_seconds is None:
            return budget
        left = max(MIN_CORRECTION_SECONDS, self.correction_round_seconds - propagation_seconds)
        return left if budget is None else min(budget, left)


def _tuples(values: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _digest(labels: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(labels, np.uint8).tobytes()).hexdigest()


def _frame_file(index: int, suffix: str) -> str:
    return f"{index:05d}{suffix}"


class VideoSession:
    """Create one with ``VideoSession(video, folder)``; open a saved one with ``VideoSession.open(folder)``.

    ``video``: a path (video file, folder of frames, TIFF stack, .npy) or a (T, H, W[, C]) array; frames are
    read lazily. ``folder``: where the session lives (new or empty); None keeps it in a temporary folder that
    ``close()`` removes. ``weights``: the checkpoint to fine-tune from (the shipped one by default) or a
    network.
    """

    def __init__(
        self,
        video,
        folder=None,
        weights: str | Path | SegFlowNet | None = None,
        settings: SessionSettings = SessionSettings(),
    ) -> None:
        self._temporary = None
        if folder is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="segflow-session-")
            folder = self._temporary.name
        self.folder = Path(folder)
        if (self.folder / SESSION_FILE).exists():
            raise SegFlowError(f"{self.folder}: already holds a session; open it with VideoSession.open")
        if self.folder.exists() and any(self.folder.iterdir()):
            raise SegFlowError(f"{self.folder}: the session folder must be new or empty")
        self.frames = open_video(video)
        self.source = str(Path(video).resolve()) if isinstance(video, (str, Path)) else None
        self.settings = settings
        self.device = choose_device(settings.device)
        base, self.weights_path = self._base_network(weights)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._set_up(base)
        self._finetuned_on: dict[int, str] = {}
        self._propagated_from: dict[int, str] = {}
        self.net: SegFlowNet | None = None
        self.annotations: dict[int, np.ndarray] = {}
        self.objects: ObjectChannels | None = None
        #: seconds per frame result of the latest propagation, from start to end as the caller saw it
        self._seconds_per_result: float | None = None
        write_text(self._state_text(), self.folder / SESSION_FILE)

    def _set_up(self, base: SegFlowNet) -> None:
        self.base = base
        self.geometry = WorkingResolution(self.frames.shape[1], self.frames.shape[2], self.settings.long_side)
        self.journal = Journal(self.folder)
        self._results: set[int] = set()
        #: each frame's attention score from the latest propagation over it (inference/attention.py)
        self.attention: dict[int, float] = {}

    @staticmethod
    def _base_network(weights) -> tuple[SegFlowNet, str | None]:
        if isinstance(weights, SegFlowNet):
            return copy.deepcopy(weights).cpu(), None
        path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
        return load_checkpoint(path)[0], str(path.resolve())

    # -- saved state ---------------------------------------------------------------------------------

    @staticmethod
    def peek(folder) -> dict:
        """A saved session's state (video, shape, settings, objects...) without opening it."""
        folder = Path(folder)
        state_path = folder / SESSION_FILE
        if not state_path.is_file():
            raise SegFlowError(f"{folder}: no session here (no {SESSION_FILE})")
        try:
            state = json.loads(state_path.read_text())
        except json.JSONDecodeError as error:
            raise SegFlowError(f"{state_path}: damaged session file ({error})") from error
        if state.get("version") != FORMAT_VERSION:
            raise SegFlowError(f"{state_path}: session format {state.get('version')!r}, expected {FORMAT_VERSION}")
        return state

    @classmethod
    def open(cls, folder, video=None, weights: str | Path | SegFlowNet | None = None) -> VideoSession:
        """A saved session. ``video`` is needed when the session was made from an array (else the recorded
        path is reopened); ``weights`` when it was made from a network object."""
        folder = Path(folder)
        state = cls.peek(folder)
        if video is None:
            if state["video"] is None:
                raise SegFlowError(f"{folder}: the session was made from an array; pass the video to open it")
            video = state["video"]
        session = cls.__new__(cls)
        session._temporary = None
        session.folder = folder
        session.frames = open_video(video)
        if list(session.frames.shape[:3]) != state["shape"]:
            raise SegFlowError(
                f"{folder}: the session's video is {state['shape']} (frames, height, width), "
                f"the video given is {list(session.frames.shape[:3])}"
            )
        session.source = state["video"]
        session.settings = SessionSettings.from_dict(state["settings"])
        session.device = choose_device(session.settings.device)
        if weights is None and state["weights"] is None:
            raise SegFlowError(f"{folder}: the session was made from a network object; pass weights to open it")
        base, session.weights_path = cls._base_network(weights if weights is not None else state["weights"])
        session._set_up(base)
        session._load_state()
        remove_leftovers(folder)
        return session

    def _state(self) -> dict:
        return {
            "version": FORMAT_VERSION,
            "video": self.source,
            "shape": list(self.frames.shape[:3]),
            "settings": self.settings.to_dict(),
            "weights": self.weights_path,
            "objects": list(self.objects.object_ids) if self.objects else None,
            "finetuned_on": {str(k): v for k, v in self._finetuned_on.items()},
            "propagated_from": {str(k): v for k, v in self._propagated_from.items()},
            "seconds_per_result": self._seconds_per_result,
        }

    def _state_text(self) -> str:
        return json.dumps(self._state(), indent=1)

    def _write_state(self, entry: Entry) -> None:
        text = self._state_text()
        path = self.folder / SESSION_FILE
        if path.is_file() and path.read_text() == text:
            return
        entry.write(SESSION_FILE, lambda target: write_text(text, target))

    def _load_state(self) -> None:
        state = json.loads((self.folder / SESSION_FILE).read_text())
        self.objects = ObjectChannels(tuple(state["objects"])) if state["objects"] else None
        self._finetuned_on = {int(k): v for k, v in state["finetuned_on"].items()}
        self._propagated_from = {int(k): v for k, v in state["propagated_from"].items()}
        self._seconds_per_result = state.get("seconds_per_result")  # sessions saved before it was kept: None
        self.annotations = {
            int(p.stem): read_label_image(p) for p in sorted((self.folder / "annotations").glob("*.png"))
        }
        weights = self.folder / "finetuned.pt"
        self.net = load_checkpoint(weights)[0] if weights.is_file() else None
        label_folder = self.folder / "results" / "labels"
        self._results = {int(p.stem) for p in label_folder.glob("*.png")} if label_folder.is_dir() else set()
        scores = self.folder / ATTENTION_FILE
        # sessions saved before the scores were kept have none: their frames are scored at their next run
        saved = json.loads(scores.read_text()) if scores.is_file() else {}
        self.attention = {int(t): float(v) for t, v in saved.items() if int(t) in self._results}

    # -- reading -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def result_frames(self) -> list[int]:
        return sorted(self._results)

    def labels(self, index: int) -> np.ndarray | None:
        """The labels of frame ``index`` (the user's annotation where there is one), or None."""
        self._check_index(index, "frame")
        if index in self.annotations:
            return self.annotations[index].copy()
        if index not in self._results:
            return None
        return read_label_image(self.folder / "results" / "labels" / _frame_file(index, ".png"))

    def flow(self, index: int) -> np.ndarray | None:
        """The (H, W, 2) flow from frame ``index`` to the next one in the direction it was propagated, or None."""
        self._check_index(index, "frame")
        path = self.folder / "results" / "flow" / _frame_file(index, ".npy")
        return resize_flow(read_npy(path), self.frames.shape[1:3]) if path.is_file() else None

    def confidence(self, index: int) -> np.ndarray | None:
        """(H, W) float32 in [0, 1]: how sure the network was of each pixel's label (its largest class
        probability; 1 on the user's frames), or None."""
        self._check_index(index, "frame")
        path = self.folder / "results" / "confidence" / _frame_file(index, ".png")
        return resize_map(read_grey_png(path), self.frames.shape[1:3]) if path.is_file() else None

    def labels_volume(self) -> np.ndarray:
        """(T, H, W) uint8: every frame's labels, 0 where there is no result yet."""
        volume = np.zeros(self.frames.shape[:3], np.uint8)
        for index in self._results | set(self.annotations):
            volume[index] = self.labels(index)
        return volume

    # -- annotations ---------------------------------------------------------------------------------

    def add_annotation(self, index: int, labels: np.ndarray) -> None:
        """The user's labels for frame ``index`` (ids are objects, 0 background; all 0: no object is on that
        frame). Checked before anything changes; then it joins the fine-tuning set, and the next ``run()``
        re-propagates around it."""
        self.change_annotations({index: labels})

    def add_annotations(self, annotations: dict[int, np.ndarray]) -> None:
        """Several frames' labels at once, as one undoable change: all are checked before any is kept."""
        self.change_annotations(annotations)

    def change_annotations(self, added: dict[int, np.ndarray] | None = None, removed=()) -> None:
        """Set the labels of the frames ``added`` and take back the annotations of the frames ``removed`` (they
        become propagated frames again), as one undoable change, checked whole before anything changes. A frame
        whose labels are all 0 says that no object is there; some frame must still show an object."""
        added = {int(t): np.asarray(a) for t, a in (added or {}).items()}
        removed = sorted({int(t) for t in removed})
        for index in added:
            self._check_index(index, "annotation frame")
        for index in removed:
            if index not in self.annotations:
                raise SegFlowError(f"frame {index} holds no annotation to take back")
            if index in added:
                raise SegFlowError(f"frame {index} is both given labels and taken back")
        merged = {t: a for t, a in {**self.annotations, **added}.items() if t not in removed}
        if not merged:
            raise SegFlowError("taking back every annotation would leave nothing to learn from; paint another "
                               "frame first, or undo")
        _, objects = prepare_annotations(self.frames, merged)
        entry = self.journal.begin()
        try:
            for index, labels in added.items():
                labels = labels.astype(np.uint8)
                entry.write(f"annotations/{_frame_file(index, '.png')}",
                            lambda path, labels=labels: write_label_png(labels, path))
                self.annotations[index] = labels
            for index in removed:
                entry.remove(f"annotations/{_frame_file(index, '.png')}")
                del self.annotations[index]
            self.objects = objects
            self._write_state(entry)
        finally:
            entry.discard_if_empty()

    # -- fine-tuning ---------------------------------------------------------------------------------

    @property
    def needs_finetune(self) -> bool:
        current = {t: _digest(a) for t, a in self.annotations.items()}
        return self.net is None or current != self._finetuned_on

    def finetune(self) -> Iterator[FinetuneStep]:
        """Fine-tune on every annotation: from the base weights the first time (or when the objects changed),
        else warm-started from the last fine-tune for the short correction budget. The session adopts the
        new weights only when the generator runs to its end."""
        if not self.annotations:
            raise SegFlowError("no annotated frame: paint the object on at least one frame first")
        entry = self.journal.begin()
        try:
            yield from self._finetune(entry)
        finally:
            entry.discard_if_empty()

    @property
    def _warm(self) -> bool:
        """Whether the next fine-tune is a correction: warm-started from the last one, the objects unchanged."""
        return (self.net is not None and self.objects is not None
                and self.net.config.num_classes == self.objects.num_objects + 1)

    def next_finetune(self) -> FinetuneConfig:
        """The fine-tune the next ``finetune()`` or ``run()`` makes: the first one, or a correction whose time
        budget leaves room for re-propagating the pending stretches at the session's last measured pace."""
        if not self._warm:
            return self.settings.first_finetune()
        expected = None
        if self._seconds_per_result is not None:
            expected = self._seconds_per_result * self.pending_results
        return self.settings.correction_finetune(expected)

    def _finetune(self, entry: Entry) -> Iterator[FinetuneStep]:
        warm = self._warm
        net = copy.deepcopy(self.net if warm else self.base)
        config = self.next_finetune()
        place_for_training(net, self.device, config.batch_size)
        try:
            yield from finetune(net, self.frames, self.annotations, self.objects, config, self.device)
        except RuntimeError as error:
            if is_out_of_memory(error):
                raise out_of_memory_error(self.device, self.settings.long_side, "fine-tuning") from error
            raise
        net.cpu()
        entry.write("finetuned.pt", lambda path: save_checkpoint(net, path))
        self.net = net
        self._finetuned_on = {t: _digest(a) for t, a in self.annotations.items()}
        self._write_state(entry)

    # -- propagation ---------------------------------------------------------------------------------

    def propagate(
        self, start: int, direction: str = "forward", bidirectional: bool | None = None, stop: int | None = None
    ) -> Iterator[FrameResult]:
        """Propagate from frame ``start`` ``forward``, ``backward`` or ``both`` (to ``stop``, default the
        video's end), yielding one FrameResult per frame; each is written before it is yielded. User-made
        frames keep the user's labels. ``bidirectional`` (default: the settings) adds the backward memory
        sweep; its first, one-way results come with ``final=False``."""
        self._check_index(start, "start frame")
        if direction not in DIRECTIONS:
            raise SegFlowError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        if stop is not None:
            self._check_index(stop, "stop frame")
        self._require_finetuned()
        stretches = []
        for way in ("forward", "backward"):
            if direction in (way, "both"):
                order = frame_order(len(self), start, way, stop if direction == way else None)
                if order:  # a stop behind the start: nothing that way
                    stretches.append(Stretch(start, order[-1]))
        entry = self.journal.begin()
        try:
            yield from self._propagate_stretches(entry, stretches, bidirectional)
        finally:
            entry.discard_if_empty()

    def _propagate_stretches(self, entry: Entry, stretches: list[Stretch], bidirectional: bool | None):
        bidirectional = self.settings.bidirectional if bidirectional is None else bidirectional
        net = place_model(copy.deepcopy(self.net), self.device)
        options = dict(bidirectional=bidirectional, refine_edges=self.settings.refine_edges)
        final: set[int] = set()
        scored = dict(self.attention)
        started, yielded = time.perf_counter(), 0
        carrier = None
        if self.settings.carry_user_masks and UserMaskCarrier.available():
            carrier = UserMaskCarrier(self.frames, self.annotations, self.objects, self.geometry)
        try:
            for stretch in stretches:
                if stretch.between:
                    results = propagate_between(net, self.frames, self.objects, stretch.start, stretch.stop,
                                                self.geometry, self.device, self.annotations.get(stretch.start),
                                                self.annotations.get(stretch.stop), scratch=self.folder, **options)
                else:
                    results = propagate(net, self.frames, self.objects, stretch.orders[0], self.geometry,
                                        self.device, start_labels=self.annotations.get(stretch.start), **options)
                for result in results:
                    if result.index in final:
                        continue
                    if result.final:
                        final.add(result.index)
                        if carrier is not None:
                            result = carrier.blend(result)
                    yield self._store(entry, result)
                    yielded += 1
        except RuntimeError as error:
            if is_out_of_memory(error):
                raise out_of_memory_error(self.device, self.settings.long_side, "propagation") from error
            raise
        finally:
            if yielded:
                self._seconds_per_result = (time.perf_counter() - started) / yielded
            if self.attention != scored:  # kept with the frames written, however the walk ended
                text = json.dumps({str(t): v for t, v in sorted(self.attention.items())})
                try:
                    entry.write(ATTENTION_FILE, lambda path: write_text(text, path))
                except OSError:  # a full disk: the frames are kept; only their scores wait for the next run
                    pass

    def _store(self, entry: Entry, result: FrameResult) -> FrameResult:
        index = result.index
        if index in self.annotations:
            user = self.annotations[index]
            channels = self.objects.to_channels(user)
            probabilities = np.eye(self.objects.num_objects + 1, dtype=np.float16)[channels].transpose(2, 0, 1)
            result = replace(result, labels=user.copy(), probabilities=probabilities, attention=0.0)
        try:
            entry.write(f"results/labels/{_frame_file(index, '.png')}",
                        lambda path: write_label_png(result.labels, path))
            if self.settings.keep_flow:
                entry.write(f"results/flow/{_frame_file(index, '.npy')}",
                            lambda path: write_npy(result.working_flow.astype(np.float16), path))
            if self.settings.keep_confidence:
                # on the working grid, like the flow: a quarter of the pixels to encode at 854x480
                confidence = resize_map(result.probabilities.max(0), self.geometry.scaled)
                entry.write(f"results/confidence/{_frame_file(index, '.png')}",
                            lambda path: write_grey_png(confidence, path))
        except OSError as error:
            # the writers are atomic: nothing half-written is left; the frame simply has no result now
            self._results.discard(index)
            self.attention.pop(index, None)
            for part in (f"labels/{_frame_file(index, '.png')}", f"flow/{_frame_file(index, '.npy')}",
                         f"confidence/{_frame_file(index, '.png')}"):
                (self.folder / "results" / part).unlink(missing_ok=True)
            kept = len(self._results)
            if error.errno == errno.ENOSPC:
                raise SegFlowError(
                    f"{self.folder}: the disk is full; frame {index} could not be written. The {kept} frames "
                    "written before it are kept: free some space and run again to continue from there"
                ) from error
            raise SegFlowError(
                f"{self.folder}: frame {index} could not be written ({error}); the {kept} frames written before "
                "it are kept"
            ) from error
        self._results.add(index)
        self.attention[index] = float(result.attention)
        return result

    # -- the one button ------------------------------------------------------------------------------

    def pending_stretches(self) -> list[Stretch]:
        """The stretches ``run()`` would propagate: on each side of every annotation made or changed since the
        last propagation, up to the neighbouring user frame (masks carried from both and fused) or the video's
        end, and across the place of every annotation taken back (``correction_stretches``)."""
        annotated = sorted(self.annotations)
        changed = [t for t in annotated if self._propagated_from.get(t) != _digest(self.annotations[t])]
        removed = [t for t in self._propagated_from if t not in self.annotations]
        return correction_stretches(annotated, changed, len(self), removed)

    @property
    def pending_results(self) -> int:
        """How many FrameResults ``run()``'s propagation will yield (for a progress bar)."""
        return expected_results(self.pending_stretches(), self.settings.sweeps)

    def run(self) -> Iterator[FinetuneStep | FrameResult]:
        """Fine-tune if the annotations changed since the last fine-tune, then propagate the pending stretches;
        one undo entry for both. Yields FinetuneSteps, then FrameResults."""
        if not self.annotations:
            raise SegFlowError("no annotated frame: paint the object on at least one frame first")
        entry = self.journal.begin()
        try:
            if self.needs_finetune:
                yield from self._finetune(entry)
            yield from self._propagate_stretches(entry, self.pending_stretches(), None)
            self._propagated_from = {t: _digest(a) for t, a in self.annotations.items()}
            self._write_state(entry)
        finally:
            entry.discard_if_empty()

    # -- settings and saving -------------------------------------------------------------------------

    def reconfigure(self, settings: SessionSettings) -> None:
        """New settings for the work to come (device, budgets, working resolution...); results so far
        stay. Not an undoable change: undo keeps the settings in force."""
        device = choose_device(settings.device)
        geometry = WorkingResolution(self.frames.shape[1], self.frames.shape[2], settings.long_side)
        self.settings, self.device, self.geometry = settings, device, geometry
        write_text(self._state_text(), self.folder / SESSION_FILE)

    @staticmethod
    def check_save_folder(folder) -> Path:
        """``folder`` as a Path when the session can be saved there (new or empty), else a SegFlowError."""
        folder = Path(folder)
        if (folder / SESSION_FILE).exists():
            raise SegFlowError(f"{folder}: already holds a session; choose a new or empty folder")
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise SegFlowError(f"{folder}: the folder to save the session in must be new or empty")
        return folder

    def save_as(self, folder) -> None:
        """Copy the session, undo history included, to ``folder`` (new or empty) and go on working there."""
        folder = self.check_save_folder(folder)
        staging = folder.with_name(f".{folder.name}.saving")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            shutil.copytree(self.folder, staging)
            if folder.exists():
                folder.rmdir()
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        # the new folder is the session's before the old one goes: a reader (the viewer drawing a frame) finds
        # the files in one or the other
        temporary, self._temporary = self._temporary, None
        self.folder = folder
        self.journal = Journal(folder)
        if temporary is not None:
            temporary.cleanup()

    # -- undo and closing ----------------------------------------------------------------------------

    def undo(self) -> list[int] | None:
        """Take back the newest change (a run, a fine-tune, a propagation or an added annotation): every
        file it wrote returns to what it was. Returns the frames whose labels changed back (empty when the
        change held no labels), or None when there is nothing to undo. The settings stay as they are."""
        restored = self.journal.undo()
        if restored is None:
            return None
        self._load_state()
        write_text(self._state_text(), self.folder / SESSION_FILE)
        frames = {int(Path(p).stem) for p in restored if p.startswith(("results/labels/", "annotations/"))}
        return sorted(frames)

    @property
    def can_undo(self) -> bool:
        return bool(self.journal.entries())

    def close(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    def __enter__(self) -> VideoSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- checks --------------------------------------------------------------------------------------

    def _check_index(self, index, name: str) -> None:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self):
            raise SegFlowError(f"{name} {index!r} is out of range (the video has frames 0..{len(self) - 1})")

    def _require_finetuned(self) -> None:
        if self.net is None:
            raise SegFlowError("the session has no fine-tuned weights yet: run finetune() (or run()) first")
        if self.objects is None or self.net.config.num_classes != self.objects.num_objects + 1:
            raise SegFlowError("the objects changed since the last fine-tune: run finetune() (or run()) again")

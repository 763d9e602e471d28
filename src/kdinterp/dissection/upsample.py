"""Unit masks: a unit's raw map, upsampled bilinearly to the segmentation size, above its threshold.

NetDissect-Lite's ``tally_job`` (``research/dissection.md`` §1.3, step 3): for each image and unit
whose raw map has ``max > T_u`` ("the gate"), resize the map to ``(sh, sw)`` (PIL / ``cv2``
bilinear, which equal ``F.interpolate(mode="bilinear", align_corners=False)``, §0) and take the
pixels ``> T_u``. Here that is done for a whole batch at once and kept sparse
(:class:`ActivePixels`): only the pairs that pass the gate are resized, only the blocks of output
pixels that can hold an active pixel are finished (:func:`active_pixels`), and only the active
pixels are returned. About 0.5 % of the pixels are active, so this is far less work than
upsampling every map.

The arithmetic is float64, in ``F.interpolate``'s order (along x, then along y) with its weights.
float64 makes the comparison with the threshold that of the exact bilinear value for all practical
purposes (errors ~1e-16 instead of float32's ~1e-7), so the masks do not depend on how an
implementation groups the sums; the reference oracle (``tests/lite_oracle.py``), which calls
``F.interpolate`` on one map at a time, gets the same masks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ActivePixels", "active_pixels", "bilinear_matrix", "unit_masks"]

#: Largest number of interpolated float64 values held at once (16 MiB). It bounds memory per batch
#: and keeps temporaries below glibc's 32 MiB mmap threshold (larger ones are page-faulted afresh
#: on every allocation, which made the whole tally several times slower).
MAX_UPSAMPLED = 1 << 21
#: Output pixels per side of the blocks that are upsampled (or skipped) together.
BLOCK = 8


def bilinear_matrix(size_in: int, size_out: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The float64 ``(size_out, size_in)`` matrix of 1-D bilinear interpolation, ``align_corners=False``.

    Obtained by interpolating the identity with ``F.interpolate`` in float64, so its weights are
    PyTorch's (computed in double precision).
    """
    eye = torch.eye(size_in, dtype=torch.float64, device=device)[None]
    return F.interpolate(eye, size=size_out, mode="linear", align_corners=False)[0].T


@dataclass(frozen=True)
class ActivePixels:
    """The active pixels of a batch, grouped by (image, unit) pair; all tensors int64 on one device.

    ``M`` candidate pairs (those that pass Lite's gate, a pair may still have no active pixel)
    and ``N`` active pixels.

    Attributes:
        batch: images in the batch ``B``.
        num_pixels: pixels per segmentation ``S = sh * sw``.
        pair_image: ``(M,)`` image of each pair, in ``[0, B)``.
        pair_unit: ``(M,)`` unit of each pair.
        pixel_pair: ``(N,)`` pair of each active pixel, in ``[0, M)``.
        pixel: ``(N,)`` flat pixel index ``y * sw + x`` of each active pixel.
    """

    batch: int
    num_pixels: int
    pair_image: torch.Tensor
    pair_unit: torch.Tensor
    pixel_pair: torch.Tensor
    pixel: torch.Tensor

    @classmethod
    def from_masks(cls, masks: torch.Tensor) -> ActivePixels:
        """From dense boolean masks ``(B, U, S)`` (every (image, unit) is a pair)."""
        batch, units, pixels = masks.shape
        image, unit, pixel = masks.nonzero(as_tuple=True)
        cells = torch.arange(batch * units, device=masks.device)
        return cls(batch, pixels, cells // units, cells % units, image * units + unit, pixel)

    def pair_count(self) -> torch.Tensor:
        """``(M,)`` active pixels of each pair."""
        return torch.bincount(self.pixel_pair, minlength=self.pair_image.shape[0])

    def to(self, device: torch.device | str) -> ActivePixels:
        """The same pixels with the tensors on ``device``."""
        tensors = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v.to(device) for k, v in tensors.items() if torch.is_tensor(v)})

    def dense(self, units: int) -> torch.Tensor:
        """The boolean masks ``(B, U, S)``."""
        masks = torch.zeros(self.batch, units, self.num_pixels, dtype=torch.bool, device=self.pixel.device)
        masks[self.pair_image[self.pixel_pair], self.pair_unit[self.pixel_pair], self.pixel] = True
        return masks


def active_pixels(activations: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int],
                  max_upsampled: int = MAX_UPSAMPLED) -> ActivePixels:
    """Active pixels of every unit on every image of a batch, at segmentation resolution.

    As ``F.interpolate``, the maps are interpolated along x first, then along y. Only what can be
    active is interpolated along y: the (image, unit) pairs that pass Lite's gate (``max > T_u``),
    and in those, the blocks of ``BLOCK x BLOCK`` output pixels whose x-interpolated input rows
    exceed ``T_u`` somewhere (a value is a convex combination of them, so no other block can hold
    an active pixel).

    Args:
        activations: ``(B, U, h, w)`` raw layer output.
        thresholds: ``(U,)`` per-unit thresholds (compared in float64).
        size: ``(sh, sw)`` segmentation size.
        max_upsampled: interpolate at most about this many values at once (memory bound).

    Returns:
        :class:`ActivePixels`: for each (image, unit) with ``max > T_u``, the pixels of the bilinear
        upsampling (``align_corners=False``) whose value is ``> T_u``.
    """
    batch, units, h, w = activations.shape
    device = activations.device
    thresholds = thresholds.to(device, torch.float64)
    image, unit = (activations.flatten(2).amax(2).double() > thresholds).nonzero(as_tuple=True)
    rows, cols = _Axis(h, size[0], device), _Axis(w, size[1], device)
    limit = thresholds.index_select(0, unit)
    pair_step, block_step = max(1, max_upsampled // (h * cols.padded)), max(1, max_upsampled // BLOCK**2)
    pairs, pixels = [], []
    for start in range(0, image.shape[0], pair_step):  # chunks of pairs, then of blocks, bound the temporaries
        chunk = slice(start, start + pair_step)
        maps = activations.flatten(0, 1).index_select(0, (image * units + unit)[chunk]).double()
        across = (maps @ cols.matrix.T).view(maps.shape[0], h, -1, BLOCK)       # (m, h, Gx, BLOCK) along x
        pair, block_row, block_col = _candidate_blocks(across, limit[chunk], rows)
        for first in range(0, pair.shape[0], block_step):
            blocks = slice(first, first + block_step)
            block_pair, pixel = _block_pixels(across, limit[chunk], pair[blocks], block_row[blocks], block_col[blocks],
                                              rows, cols)
            pairs.append(block_pair + start)
            pixels.append(pixel)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    return ActivePixels(batch, size[0] * size[1], image, unit, torch.cat([empty, *pairs]), torch.cat([empty, *pixels]))


class _Axis:
    """One axis of the bilinear resize, its output positions cut into blocks of ``BLOCK``.

    Output position ``i`` reads two neighbouring inputs with the weights of :func:`bilinear_matrix`,
    so a block of consecutive outputs reads a short contiguous span of inputs (2 or 3 when
    upsampling). Output positions are zero-padded up to whole blocks.

    Attributes:
        size: output positions (before padding).
        matrix: ``(G * BLOCK, size_in)`` float64 interpolation matrix (zero rows: padding).
        index: ``(G, span)`` inputs read by each block (padded with its first one).
        weight: ``(G, BLOCK, span)`` float64 weights of those inputs for each output (0: padding).
    """

    def __init__(self, size_in: int, size_out: int, device: torch.device | str) -> None:
        self.size = size_out
        blocks = -(-size_out // BLOCK)
        self.matrix = torch.zeros(blocks * BLOCK, size_in, dtype=torch.float64, device=device)
        self.matrix[:size_out] = bilinear_matrix(size_in, size_out, device)
        matrix = self.matrix.view(blocks, BLOCK, size_in)
        used = (matrix != 0).any(1)                                             # (G, size_in), contiguous
        start, count = used.int().argmax(1), used.sum(1)
        offsets = torch.arange(int(count.max()), device=device)
        inside = offsets[None, :] < count[:, None]
        self.index = torch.where(inside, start[:, None] + offsets, start[:, None])
        self.weight = matrix.gather(2, self.index[:, None, :].expand(-1, BLOCK, -1)) * inside[:, None, :]

    @property
    def padded(self) -> int:
        """Output positions including the padding."""
        return self.matrix.shape[0]

    @property
    def partial(self) -> bool:
        """Whether the last block runs past the last output position."""
        return self.size % BLOCK != 0


def _candidate_blocks(across: torch.Tensor, limit: torch.Tensor,
                      rows: _Axis) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocks whose x-interpolated input rows exceed the pair's threshold: ``(pair, block row, block column)``.

    ``across``: ``(M, h, Gx, BLOCK)`` maps interpolated along x; ``limit``: ``(M,)`` thresholds.
    """
    pairs, _, blocks_x, _ = across.shape
    line_max = across.amax(3).index_select(1, rows.index.reshape(-1)).view(pairs, *rows.index.shape, blocks_x)
    return (line_max.amax(2) > limit[:, None, None]).nonzero(as_tuple=True)


def _block_pixels(across: torch.Tensor, limit: torch.Tensor, pair: torch.Tensor, block_row: torch.Tensor,
                  block_col: torch.Tensor, rows: _Axis, cols: _Axis) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolate the given blocks along y; return ``(pair, flat pixel)`` of their pixels ``> T``, each ``(N,)``."""
    _, h, blocks_x, _ = across.shape
    line = ((pair * h)[:, None] + rows.index.index_select(0, block_row)) * blocks_x + block_col[:, None]
    lines = across.view(-1, BLOCK).index_select(0, line.reshape(-1)).view(*line.shape, BLOCK)     # (K, span, BLOCK)
    weight = rows.weight.index_select(0, block_row)                                              # (K, BLOCK, span)
    values = torch.zeros(pair.shape[0], BLOCK, BLOCK, dtype=torch.float64, device=pair.device)
    for t in range(lines.shape[1]):
        values.addcmul_(weight[:, :, t, None], lines[:, None, t, :])
    above = values > limit.index_select(0, pair)[:, None, None]
    offsets = torch.arange(BLOCK, device=pair.device)
    first_y, first_x = block_row * BLOCK, block_col * BLOCK
    if rows.partial:
        above &= (first_y[:, None] + offsets < rows.size)[:, :, None]
    if cols.partial:
        above &= (first_x[:, None] + offsets < cols.size)[:, None, :]
    block, within = above.view(-1, BLOCK**2).nonzero(as_tuple=True)
    offset = (offsets[:, None] * cols.size + offsets).reshape(-1)                                # (BLOCK**2,)
    pixel = (first_y * cols.size + first_x).index_select(0, block) + offset.index_select(0, within)
    return pair.index_select(0, block), pixel


def unit_masks(activations: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Dense binary unit masks at segmentation resolution.

    Args:
        activations: ``(B, U, h, w)`` raw layer output.
        thresholds: ``(U,)`` per-unit thresholds.
        size: ``(sh, sw)`` segmentation size.

    Returns:
        bool ``(B, U, sh * sw)``, the dense form of :func:`active_pixels`.
    """
    return active_pixels(activations, thresholds, size).dense(activations.shape[1])

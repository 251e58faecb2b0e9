"""The canonical, framework-free description of one transposed convolution.

Per spatial dimension (kernel k, stride s, dilation d, input length n):

    full  = (n - 1)*s + d*(k - 1) + 1          # the un-cropped transposed-conv result
    out   = full - lo - hi                     # (lo, hi) is the crop pair
    y[o]  = y_full[o + lo]                     # zero (then + bias) where o + lo is outside [0, full)

So ``padding=p, output_padding=a`` is the crop pair ``(p, p - a)``; a negative crop extends the output
with positions that receive only the bias. Two spellings of one deconvolution give equal configs.

Layouts are not options: ``channels_last`` says where the channel axis of the input (and output) is,
``batched`` whether there is a batch axis, and ``weight_perm`` reorders the weight file's axes before a
plain reshape to the canonical weight ``(C_in, C_out/groups, *kernel)``; ``flip`` then reverses its kernel
axes (JAX and Flax without ``transpose_kernel`` store the kernel of the forward convolution whose gradient
this is: W[i, o, t] = file[o, i, K-1-t]).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from .errors import ConfigError

FLOAT_DTYPES = ("float16", "float32", "float64")  # what deconv computes in (and --cast takes)
Shape = tuple[int, ...]
Crops = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class DeconvConfig:
    kernel: Shape
    stride: Shape
    dilation: Shape
    crops: Crops
    groups: int
    in_channels: int
    out_channels: int
    batched: bool = True
    channels_last: bool = False
    weight_perm: Shape | None = None  # None: the weight file is already (C_in, C_out/g, *k) in order
    flip: bool = False  # True: the kernel axes are reversed after the permutation and reshape
    _hash: ClassVar[int]  # set per instance by __post_init__; a ClassVar so that it is not a dataclass field

    def __post_init__(self) -> None:
        # the hash, worked out once: the engine looks each call up by its config (a dataclass's own __hash__
        # hashes every field each time); tuples of ints hash alike in every process
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, f.name) for f in fields(self))))
        rank = len(self.kernel)
        if rank not in (1, 2, 3):
            raise ConfigError(f"spatial rank {rank} is not supported", "use a 1-D, 2-D or 3-D convolution")
        for name in ("stride", "dilation", "crops"):
            if len(getattr(self, name)) != rank:
                raise ConfigError(f"{name} has {len(getattr(self, name))} values for a {rank}-D convolution")
        for name in ("kernel", "stride", "dilation"):
            if min(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive in every dimension")
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ConfigError(
                f"groups={self.groups} must divide input channels {self.in_channels} "
                f"and output channels {self.out_channels}"
            )

    def __hash__(self) -> int:
        return self._hash

    @property
    def rank(self) -> int:
        return len(self.kernel)

    @property
    def weight_shape(self) -> Shape:
        """The canonical weight shape ``(C_in, C_out/groups, *kernel)``."""
        return (self.in_channels, self.out_channels // self.groups, *self.kernel)

    def input_axes(self) -> tuple[int | None, int, tuple[int, ...]]:
        """(batch axis or None, channel axis, spatial axes) of the input tensor."""
        lead = 1 if self.batched else 0
        if self.channels_last:  # (N, *spatial, C)
            return (0 if self.batched else None), lead + self.rank, tuple(range(lead, lead + self.rank))
        return (0 if self.batched else None), lead, tuple(range(lead + 1, lead + 1 + self.rank))  # (N, C, *spatial)

    def output_shape(self, batch: int | None, spatial: Shape) -> Shape:
        """The output tensor's shape in this config's layout."""
        lead = (batch,) if self.batched else ()
        if self.channels_last:
            return (*lead, *spatial, self.out_channels)
        return (*lead, self.out_channels, *spatial)

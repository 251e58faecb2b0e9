"""Regenerate the bundled sample tensors (deterministic). Run: python samples/make_samples.py"""

from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).parent
rng = np.random.default_rng(2026)


def normal(*shape):
    return rng.standard_normal(shape).astype(np.float32)


# torch: a DCGAN-style 2-D upsampling block, weight (C_in, C_out/groups, kH, kW)
np.save(HERE / "torch_x.npy", normal(2, 8, 6, 6))
np.save(HERE / "torch_w.npy", normal(8, 4, 4, 4))
np.save(HERE / "torch_b.npy", normal(4))
# onnx: X, W, B in one .npz
np.savez(HERE / "onnx.npz", X=normal(1, 3, 5, 7), W=normal(3, 2, 3, 3), B=normal(2))
# mindspore: ops.Conv3DTranspose (dout, weight) and ops.Conv2DTranspose (dout, weight, input_size)
np.savez(HERE / "mindspore.npz", dout3d=normal(1, 4, 3, 5, 5), weight3d=normal(4, 3, 4, 6, 2),
         dout2d=normal(1, 8, 6, 6), weight2d=normal(8, 8, 3, 3))
# megengine: groups=2 needs the 6-D weight (groups, C_in/g, C_out/g, k, k, k) and a (1, C_out, 1, 1, 1) bias
np.savez(HERE / "megengine.npz", inp=normal(1, 4, 4, 4, 4), weight=normal(2, 2, 3, 3, 3, 3), bias=normal(1, 6, 1, 1, 1))
# oneflow: the seed example's options on a smaller input
np.savez(HERE / "oneflow.npz", input=normal(1, 4, 5, 6, 7), weight=normal(4, 5, 3, 5, 2), bias=normal(5))
# dragon: NHWC tensors in HDF5; the weight is (C_in, kH, kW, C_out)
with h5py.File(HERE / "dragon.h5", "w") as f:
    f.create_dataset("nhwc/x", data=normal(1, 5, 5, 4))
    f.create_dataset("nhwc/w", data=normal(4, 3, 3, 2))
    f.create_dataset("nhwc/b", data=normal(2))
# torch_ported.npz: a porting check. x, w, b and the output y that PyTorch 2.13 saved for ConvTranspose2d(4, 3, 3,
# stride=2, padding=1, output_padding=(1, 0)), copied from the goldens (tests/golden/torch.npz, t2d_s2_p1_op1)
with np.load(HERE.parent / "tests" / "golden" / "torch.npz") as golden:
    np.savez(HERE / "torch_ported.npz", **{r: golden[f"t2d_s2_p1_op1__{r}"] for r in ("x", "w", "b", "y")})

#!/usr/bin/env bash
# The main job on the bundled samples: one deconvolution per framework style, written to out/,
# plus a shape-only dry run and a file listing. `make demo` runs this with the project's venv on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
S=samples
# Print the command as it pastes into bash (a word with shell characters in single quotes), then run it.
step() {
    local line="" word
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then line+=" $word"; else line+=" '${word//\'/\'\\\'\'}'"; fi
    done
    printf '\n$%s\n' "$line"
    "$@"
}

step deconv info $S/torch_x.npy $S/onnx.npz $S/dragon.h5

# PyTorch: nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
step deconv run $S/torch_x.npy $S/torch_w.npy --bias $S/torch_b.npy \
    --set stride=2 --set padding=1 -o out/torch_y.npy --force

# ONNX ConvTranspose with auto_pad=SAME_UPPER, output as an HDF5 dataset
step deconv run $S/onnx.npz:X $S/onnx.npz:W --bias $S/onnx.npz:B --style onnx \
    --set "strides=[2,2]" --set auto_pad=SAME_UPPER -o out/onnx_y.h5:/Y --force

# MindSpore ops.Conv3DTranspose, pad_mode='same' (bias is a deconv extension: MindSpore's op takes none)
step deconv run $S/mindspore.npz:dout3d $S/mindspore.npz:weight3d --style mindspore \
    --set in_channel=4 --set out_channel=3 --set "kernel_size=(4,6,2)" --set pad_mode=same --set stride=2 \
    -o out/mindspore3d_y.npy --force

# MindSpore ops.Conv2DTranspose: the result size comes from input_size
step deconv run $S/mindspore.npz:dout2d $S/mindspore.npz:weight2d --style mindspore \
    --set out_channel=8 --set kernel_size=3 --set pad_mode=pad --set pad=1 --set stride=2 \
    --set "input_size=(1,8,12,12)" -o out/mindspore2d_y.npy --force

# MegEngine ConvTranspose3d(4, 6, 3, stride=2, padding=1, groups=2): 6-D grouped weight, (1, C, 1, 1, 1) bias
step deconv run $S/megengine.npz:inp $S/megengine.npz:weight --bias $S/megengine.npz:bias --style megengine \
    --set "stride=(2,2,2)" --set "padding=(1,1,1)" --set groups=2 -o out/megengine_y.npz:out --force

# OneFlow ConvTranspose3d(4, 5, (3,5,2), stride=(2,1,1), padding=(0,2,1)), JSON summary on stdout
step deconv run $S/oneflow.npz:input $S/oneflow.npz:weight --bias $S/oneflow.npz:bias --style oneflow \
    --set "stride=(2,1,1)" --set "padding=(0,2,1)" -o out/oneflow_y.npy --force --json -q

# Dragon conv2d_transpose in NHWC with padding='SAME' and an explicit output_shape
step deconv run $S/dragon.h5:/nhwc/x $S/dragon.h5:/nhwc/w --bias $S/dragon.h5:/nhwc/b --style dragon \
    --set data_format=NHWC --set kernel_shape=3 --set strides=2 --set padding=SAME --set "output_shape=(10,10)" \
    -o out/dragon_y.npy --force

# Shape-only dry run (reads no data): the MindSpore seed example
step deconv shape --style mindspore --input-shape 32,16,10,32,32 --weight-shape 16,3,4,6,2 \
    --set in_channel=16 --set out_channel=3 --set "kernel_size=(4,6,2)"

step deconv info out/torch_y.npy out/onnx_y.h5 out/megengine_y.npz

# Porting a model: every transposed convolution of an ONNX model exported from PyTorch, then one of them
# (asymmetric pads) run from the model itself against the output onnxruntime recorded
step deconv layers $S/deconvs.onnx --to torch
step deconv run $S/deconvs_recorded.npz:c "$S/deconvs.onnx#/asym/ConvTranspose" --expect $S/deconvs_recorded.npz:d -q

# Batch: a JSONL manifest (four styles) on two worker processes, one JSON record per job, then a CSV
# manifest planned from headers only. Paths in a manifest are relative to the manifest's folder.
mkdir -p out/batch
step deconv batch $S/jobs.jsonl --jobs 2 --force --journal out/batch/jobs.journal --json
step deconv batch $S/jobs.csv --dry-run

#!/usr/bin/env python3
"""Checks and runs ONNX files written by `cvxcnn export`, for tests/export/onnx_export_test.cpp.

Usage: run_onnx.py JOBS
JOBS is a text file with one job per line:  MODEL.onnx INPUT.raw N C H W OUTPUT.raw
INPUT.raw holds N*C*H*W little-endian float32 values (NCHW); the graph's "logits" output
is written to OUTPUT.raw as float32. Every model first goes through
onnx.checker.check_model(full_check=True) (strict shape inference included).

Execution uses onnx.reference.ReferenceEvaluator when the installed onnx has it
(onnx >= 1.13). Debian 12 ships onnx 1.12, which can check but not run a graph, and has no
onnxruntime; then the graph is run by the small interpreter below, which implements the
ONNX specification of exactly the operators cvxcnn exports, independently of cvxcnn's C++
code (float64 arithmetic, a direct sum for Conv). The first line of stdout names the
evaluator used. Exit 0 on success; any exception fails the test with its message.
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def conv(x, w, b, attrs):
    kh, kw = attrs.get("kernel_shape", w.shape[2:])
    sh, sw = attrs.get("strides", [1, 1])
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    assert attrs.get("group", 1) == 1 and attrs.get("dilations", [1, 1]) == [1, 1]
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    oh = (x.shape[2] - kh) // sh + 1
    ow = (x.shape[3] - kw) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for ky in range(kh):
        for kx in range(kw):
            window = x[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
            out += np.einsum("nchw,oc->nohw", window, w[:, :, ky, kx])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def average_pool(x, attrs):
    kh, kw = attrs["kernel_shape"]
    sh, sw = attrs.get("strides", [1, 1])
    assert attrs.get("pads", [0, 0, 0, 0]) == [0, 0, 0, 0] and attrs.get("ceil_mode", 0) == 0
    oh = (x.shape[2] - kh) // sh + 1
    ow = (x.shape[3] - kw) // sw + 1
    out = np.zeros(x.shape[:2] + (oh, ow))
    for y in range(oh):
        for xx in range(ow):
            out[:, :, y, xx] = x[:, :, y * sh:y * sh + kh, xx * sw:xx * sw + kw].mean(axis=(2, 3))
    return out


def reshape(x, shape):
    shape = [x.shape[i] if s == 0 else int(s) for i, s in enumerate(shape)]  # 0 copies (allowzero = 0)
    return x.reshape(shape)


def gemm(a, b, c, attrs):
    if attrs.get("transA", 0):
        a = a.T
    if attrs.get("transB", 0):
        b = b.T
    return attrs.get("alpha", 1.0) * (a @ b) + attrs.get("beta", 1.0) * c


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def interpret(model, feeds):
    values = {i.name: numpy_helper.to_array(i).astype(np.float64) if i.data_type == onnx.TensorProto.FLOAT
              else numpy_helper.to_array(i) for i in model.graph.initializer}
    values.update({k: v.astype(np.float64) for k, v in feeds.items()})
    for node in model.graph.node:
        x = [values[name] if name else None for name in node.input]
        attrs = attributes(node)
        op = node.op_type
        if op == "Sub":
            y = x[0] - x[1]
        elif op == "Div":
            y = x[0] / x[1]
        elif op == "Mul":
            y = x[0] * x[1]
        elif op == "Conv":
            y = conv(x[0], x[1], x[2] if len(x) > 2 else None, attrs)
        elif op == "Relu":
            y = np.maximum(x[0], 0.0)
        elif op == "LeakyRelu":
            y = np.where(x[0] >= 0, x[0], attrs.get("alpha", 0.01) * x[0])
        elif op == "Abs":
            y = np.abs(x[0])
        elif op == "GreaterOrEqual":
            y = x[0] >= x[1]
        elif op == "Cast":
            assert attrs["to"] == onnx.TensorProto.FLOAT
            y = x[0].astype(np.float64)
        elif op == "AveragePool":
            y = average_pool(x[0], attrs)
        elif op == "Reshape":
            y = reshape(x[0], x[1])
        elif op == "MatMul":
            y = x[0] @ x[1]
        elif op == "Flatten":
            axis = attrs.get("axis", 1)
            y = x[0].reshape(int(np.prod(x[0].shape[:axis])), -1)
        elif op == "Gemm":
            y = gemm(x[0], x[1], x[2], attrs)
        elif op == "Softmax":
            y = softmax(x[0], attrs.get("axis", -1))
        else:
            raise ValueError(f"operator {op} is not implemented by this test interpreter")
        values[node.output[0]] = y
    return [values[o.name] for o in model.graph.output]


def main():
    try:
        from onnx.reference import ReferenceEvaluator
    except ImportError:
        ReferenceEvaluator = None
    print("onnx.reference" if ReferenceEvaluator else f"numpy interpreter (onnx {onnx.__version__})")
    with open(sys.argv[1]) as jobs:
        for line in jobs:
            if not line.strip():
                continue
            model_path, input_path, n, c, h, w, output_path = line.split()
            onnx.checker.check_model(model_path, full_check=True)
            model = onnx.load(model_path)
            images = np.fromfile(input_path, dtype="<f4").reshape(int(n), int(c), int(h), int(w))
            output_names = [o.name for o in model.graph.output]
            if ReferenceEvaluator:
                outputs = ReferenceEvaluator(model).run(None, {"input": images})
            else:
                outputs = interpret(model, {"input": images})
            logits = outputs[output_names.index("logits")]
            probabilities = outputs[output_names.index("probabilities")]
            assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5), "probabilities do not sum to 1"
            np.asarray(logits, dtype="<f4").tofile(output_path)


if __name__ == "__main__":
    main()

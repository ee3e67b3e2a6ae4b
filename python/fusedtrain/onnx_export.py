"""ONNX export: a Sequential model as an ONNX graph built with the onnx package's helpers, so
that it runs where fusedtrain is not installed (onnxruntime, any ONNX runtime).

The graph takes ``x`` (float32, (batch, features), the batch dimension dynamic) and gives what
``predict`` gives: ``probabilities`` for a model compiled with a cross-entropy loss (softmax or
sigmoid applied to the logits), ``outputs`` otherwise; ``outputs="logits"`` gives a
classifier's logits instead. Layers: Normalization (Sub, Mul), Dense (Gemm, then its
activation), Dropout (the identity, as at inference), the activation layers; GELU is written
in its tanh form as fusedtrain computes it, x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)).

A model with a table preprocessor (fusedtrain.data.TablePreprocessor, or one trained by
``fusedtrain train`` on a CSV) takes the raw columns instead: one input per column the model
reads, named as the column, shape (batch, 1):
- numeric columns: float64, NaN for a missing value (imputed with the median, and the
  missing indicator set, as in fusedtrain);
- true/false columns: float64 1/0 (NaN missing), or strings where the training column held
  words (true/false, yes/no, ...);
- categorical columns: strings (stripped, as the table holds them), or float64 for a column
  of integer codes; a category not seen in training sets the 'unknown' slot, an empty string,
  NaN or a missing token ('NA', 'N/A', 'nan', ...) the 'missing' one.
The encoding and scaling run in float64 (ai.onnx.ml's LabelEncoder maps the strings), then the
network in float32. Date columns are refused, naming the column: ONNX has no operator that
parses dates; train with dates="drop" (``--dates drop``), or export with
``preprocessor=False``, whose graph takes the encoded features as ``x``
(``model.preprocessor.transform(table)``). The metadata holds the feature names, the class
labels and the inputs' types (JSON)."""

from __future__ import annotations

import json
import math
from typing import Any, List, Optional

import numpy as np

from . import serialization
from ._version import __version__
from .layers import Activation, Dense, Dropout, Normalization
from .tables import FALSE_WORDS, MISSING_TOKENS, TRUE_WORDS

DEFAULT_OPSET = 17
# Gemm, Softmax on the last axis and LeakyRelu as used here need opset 13.
MIN_OPSET = 13
# ai.onnx.ml's LabelEncoder with string keys and int64 or double values: version 2.
ML_OPSET = 2
OUTPUTS = ("probabilities", "logits")


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError('ONNX export needs the onnx package (pip install "fusedtrain[onnx]")') from None
    return onnx


class _Graph:
    """Nodes and initializers appended in order; names are unique."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self.count = 0

    def name(self, stem: str) -> str:
        # "::" keeps the graph's own names apart from the inputs, which are named as columns.
        self.count += 1
        return f"{stem}::{self.count}"

    def constant(self, stem: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.name(stem)
        array = np.asarray(value, dtype=dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: List[str], stem: str, domain: str = "", **attributes) -> str:
        output = self.name(stem)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=output, domain=domain, **attributes))
        return output

    def activation(self, name: Optional[str], x: str, negative_slope: float, stem: str) -> str:
        if name is None:
            return x
        if name == "relu":
            return self.node("Relu", [x], f"{stem}_relu")
        if name == "leaky_relu":
            return self.node("LeakyRelu", [x], f"{stem}_leaky_relu", alpha=float(negative_slope))
        if name == "sigmoid":
            return self.node("Sigmoid", [x], f"{stem}_sigmoid")
        if name == "tanh":
            return self.node("Tanh", [x], f"{stem}_tanh")
        if name == "softmax":
            return self.node("Softmax", [x], f"{stem}_softmax", axis=-1)
        if name == "gelu":
            cube = self.node("Mul", [self.node("Mul", [x, x], f"{stem}_square"), x], f"{stem}_cube")
            inner = self.node("Add", [x, self.node("Mul", [cube, self.constant("gelu_cubic", 0.044715)],
                                                   f"{stem}_scaled_cube")], f"{stem}_inner")
            scaled = self.node("Mul", [inner, self.constant("gelu_scale", 2.0 * math.sqrt(2.0 / math.pi))],
                               f"{stem}_twice_u")
            return self.node("Mul", [x, self.node("Sigmoid", [scaled], f"{stem}_gate")], f"{stem}_gelu")
        raise ValueError(f"activation {name!r} has no ONNX form here")


def _variants(words: Any) -> List[str]:
    """The words as written in lower, upper and title case (LabelEncoder compares exactly)."""
    return sorted({form for word in words for form in (word, word.upper(), word.title(), word.capitalize())})


def _table_graph(graph: _Graph, preprocessor: Any) -> tuple:
    """The preprocessor as ONNX nodes: ([input value infos], the float32 features' name,
    {column: input type})."""
    onnx = graph.onnx
    helper, tensor = onnx.helper, onnx.TensorProto
    inputs, types, blocks = [], {}, []
    missing_words = _variants(MISSING_TOKENS)

    def add_input(column: str, kind: str) -> str:
        inputs.append(helper.make_tensor_value_info(column, tensor.DOUBLE if kind == "float64" else tensor.STRING,
                                                    ["batch", 1]))
        types[column] = kind
        return column

    for plan in preprocessor.columns:
        stem = plan.name
        if plan.kind == "dropped":
            continue
        if plan.kind == "datetime":
            raise ValueError(f"preprocessor: the column {plan.name!r} holds dates, which ONNX cannot parse; train with "
                             f"dates='drop' (--dates drop), or export(..., preprocessor=False) for a graph on the "
                             f"encoded features")
        if plan.kind == "categorical":
            unknown = len(plan.categories)
            width = unknown + 1 + int(plan.missing_slot)
            missing = unknown + 1 if plan.missing_slot else unknown
            if all(isinstance(category, int) for category in plan.categories):
                # Integer codes: compared in float64 with each category, no precision lost.
                value = add_input(plan.name, "float64")
                gap = graph.node("IsNaN", [value], f"{stem}_gap")
                hits = [graph.node("Cast", [graph.node("Equal", [value, graph.constant(f"{stem}_code", [[category]],
                                                                                      np.float64)], f"{stem}_is")],
                                   f"{stem}_hit", to=tensor.DOUBLE) for category in plan.categories]
                found = graph.node("Sum", hits, f"{stem}_found") if len(hits) > 1 else hits[0]
                gap_value = graph.node("Cast", [gap], f"{stem}_gap_value", to=tensor.DOUBLE)
                rest = graph.node("Sub", [graph.constant(f"{stem}_one", [[1.0]], np.float64), found], f"{stem}_rest")
                if plan.missing_slot:
                    unknown_slot = graph.node("Sub", [rest, gap_value], f"{stem}_unknown")
                    blocks.append(graph.node("Concat", hits + [unknown_slot, gap_value], f"{stem}_one_hot", axis=1))
                else:
                    blocks.append(graph.node("Concat", hits + [rest], f"{stem}_one_hot", axis=1))
                continue
            value = add_input(plan.name, "string")
            keys = [str(category) for category in plan.categories]
            spare = [word for word in missing_words if word not in keys]
            slots = graph.node("LabelEncoder", [value], f"{stem}_slot", domain="ai.onnx.ml",
                               keys_strings=keys + spare, values_int64s=list(range(unknown)) + [missing] * len(spare),
                               default_int64=unknown)
            # onnxruntime's OneHot gives float32 (not float64) values: 0 and 1 are exact in both.
            one_hot = graph.node("OneHot", [slots, graph.constant(f"{stem}_width", [width], np.int64),
                                            graph.constant(f"{stem}_off_on", [0.0, 1.0])],
                                 f"{stem}_one_hot", axis=-1)
            blocks.append(graph.node("Cast", [graph.node("Flatten", [one_hot], f"{stem}_flat", axis=1)],
                                     f"{stem}_slots", to=tensor.DOUBLE))
            continue
        if plan.kind == "boolean" and plan.note == "true/false words":
            words = add_input(plan.name, "string")
            true, false = _variants(TRUE_WORDS), _variants(FALSE_WORDS)
            value = graph.node("Cast", [graph.node("LabelEncoder", [words], f"{stem}_word", domain="ai.onnx.ml",
                                                   keys_strings=true + false,
                                                   values_floats=[1.0] * len(true) + [0.0] * len(false),
                                                   default_float=float("nan"))], f"{stem}_value", to=tensor.DOUBLE)
        else:
            value = add_input(plan.name, "float64")
        gap = graph.node("IsNaN", [value], f"{stem}_gap")
        blocks.append(graph.node("Where", [gap, graph.constant(f"{stem}_fill", [[plan.fill]], np.float64), value],
                                 f"{stem}_filled"))
        if plan.indicator:
            blocks.append(graph.node("Cast", [gap], f"{stem}_missing", to=tensor.DOUBLE))
    encoded = graph.node("Concat", blocks, "encoded", axis=1) if len(blocks) > 1 else blocks[0]
    if preprocessor.mean is not None:
        centred = graph.node("Sub", [encoded, graph.constant("table_mean", preprocessor.mean, np.float64)], "centred")
        encoded = graph.node("Div", [centred, graph.constant("table_std", preprocessor.std, np.float64)], "scaled")
    return inputs, graph.node("Cast", [encoded], "features", to=tensor.FLOAT), types


def export_onnx(model, path: Any, opset: Optional[int] = None, outputs: str = "probabilities",
                preprocessor: bool = True) -> None:
    """Writes ``model`` as an ONNX file at ``path`` (atomically); see the module's docstring."""
    onnx = _onnx()
    from .ops import _checks as check

    model._require_built("export")
    opset = DEFAULT_OPSET if opset is None else check.integer(opset, "opset", low=MIN_OPSET)
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs: expected 'probabilities' or 'logits', got {outputs!r}")
    preprocessor = check.flag(preprocessor, "preprocessor") and model.preprocessor is not None
    link = model._link()
    if outputs == "logits" and link is None:
        raise ValueError("outputs: 'logits' needs a model compiled with a cross-entropy loss; this one's outputs are "
                         "its predictions")
    fold = model._fold(model.loss)
    graph = _Graph(onnx)
    inputs = [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", model.input_dim])]
    x, types = "x", {"x": "float32"}
    if preprocessor:
        inputs, x, types = _table_graph(graph, model.preprocessor)
    last = len(model.layers) - 1
    for index, layer in enumerate(model.layers):
        stem = layer.name
        apply_activation = not (fold and index == last)
        if isinstance(layer, Normalization):
            mean = model.backend.to_host(layer.mean)
            scale = 1.0 / np.maximum(np.sqrt(model.backend.to_host(layer.variance)), np.float32(layer.epsilon))
            x = graph.node("Mul", [graph.node("Sub", [x, graph.constant(f"{stem}_mean", mean)], f"{stem}_centred"),
                                   graph.constant(f"{stem}_scale", scale)], stem)
        elif isinstance(layer, Dense):
            operands = [x, graph.constant(f"{stem}_kernel", model.backend.to_host(layer.kernel))]
            if layer.use_bias:
                operands.append(graph.constant(f"{stem}_bias", model.backend.to_host(layer.bias)))
            x = graph.node("Gemm", operands, stem)
            if apply_activation:
                x = graph.activation(layer.activation, x, layer.negative_slope, stem)
        elif isinstance(layer, Dropout):
            continue
        elif isinstance(layer, Activation):
            if apply_activation:
                x = graph.activation(layer.activation, x, layer.negative_slope, stem)
        else:
            raise ValueError(f"layers[{index}]: {type(layer).__name__} ({layer.name!r}) has no ONNX form here")
    logits = x
    if outputs == "probabilities" and link is not None:
        x = graph.activation(link, logits, 0.0, "output")
    output_name = "logits" if outputs == "logits" else ("probabilities" if link is not None else "outputs")
    if output_name in types:
        raise ValueError(f"preprocessor: the column {output_name!r} has the name of the graph's output; rename it")
    graph.nodes.append(onnx.helper.make_node("Identity", [x], [output_name], name=output_name))
    graph_proto = onnx.helper.make_graph(
        graph.nodes, model.name, inputs,
        [onnx.helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, ["batch", model.output_dim])],
        initializer=graph.initializers)
    opsets = [onnx.helper.make_opsetid("", opset)]
    if any(node.domain == "ai.onnx.ml" for node in graph.nodes):
        opsets.append(onnx.helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    proto = onnx.helper.make_model(graph_proto, producer_name="fusedtrain", producer_version=__version__,
                                   opset_imports=opsets)
    metadata = {"fusedtrain_version": __version__, "outputs": output_name, "inputs": json.dumps(types)}
    names = model.feature_names or (model.preprocessor.feature_names if model.preprocessor is not None else None)
    if names is not None:
        metadata["feature_names"] = json.dumps(names)
    if model.class_labels is not None:
        metadata["class_labels"] = json.dumps(model.class_labels)
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    serialization.write_atomically(path, proto.SerializeToString())

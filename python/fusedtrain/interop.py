"""Moving models and data between fusedtrain, NumPy and PyTorch.

- ``state_dict(model)``: the weights as NumPy arrays under the names of the model's file
  ("layers.{i}.kernel" of shape (inputs, units), "layers.{i}.bias").
- ``to_torch(model)``: an equivalent ``torch.nn.Sequential`` holding a copy of the weights,
  whose outputs equal ``model.predict`` within float32 rounding; ``to_torch_state_dict(model)``
  the state dict of that module; ``load_torch_state_dict(model, state_dict)`` the way back.
  PyTorch's ``nn.Linear`` stores its weight as (units, inputs), the transpose of our kernel.
- ``host_array(value, name)``: the input rule of fit/evaluate/predict for objects that are not
  NumPy arrays: CPU arrays with ``__dlpack__`` (PyTorch tensors, JAX arrays, ...) are read
  without a copy through ``np.from_dlpack``; GPU arrays (CuPy, CUDA tensors) are refused with a
  TypeError here (a model on a GPU takes CuPy features itself, see models.py).

PyTorch stays optional: it is imported by the functions that need it, never by fusedtrain."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from .ops import _checks as check

__all__ = ["state_dict", "to_torch", "to_torch_state_dict", "load_torch_state_dict", "host_array"]

# DLPack's device type code for ordinary CPU memory (DLDeviceType.kDLCPU).
_DLPACK_CPU = 1
_DLPACK_DEVICES = {2: "CUDA", 3: "CUDA host", 4: "OpenCL", 7: "Vulkan", 8: "Metal", 10: "ROCm", 13: "CUDA managed"}


def host_array(value: Any, name: str) -> Any:
    """``value`` as something np.asarray reads in place: NumPy arrays and plain Python data as
    they are, CPU DLPack objects through np.from_dlpack (no copy). CuPy arrays and other
    device arrays raise TypeError."""
    if isinstance(value, np.ndarray):
        return value
    if check.is_cupy(value) or hasattr(value, "__cuda_array_interface__"):
        raise TypeError(f"{name}: a GPU array ({type(value).__module__}.{type(value).__name__}); a model on "
                        f"the CPU takes host arrays: train with Sequential(device='cuda') to use CuPy arrays on "
                        f"the GPU, or copy it to the host first ({name}.get() for CuPy, {name}.cpu() for PyTorch)")
    if not hasattr(value, "__dlpack__"):
        return value
    device = value.__dlpack_device__()[0] if hasattr(value, "__dlpack_device__") else _DLPACK_CPU
    if int(device) != _DLPACK_CPU:
        where = _DLPACK_DEVICES.get(int(device), f"DLPack device type {int(device)}")
        raise TypeError(f"{name}: an array in {where} memory; fusedtrain takes host arrays or, on a model with "
                        f"device='cuda', CuPy arrays. Copy it to the host first (e.g. {name}.cpu() for PyTorch), or "
                        f"pass cupy.from_dlpack({name})")
    try:
        return np.from_dlpack(value)
    except (TypeError, ValueError, RuntimeError, BufferError) as error:
        raise TypeError(f"{name}: could not read the {type(value).__name__} through DLPack ({error}); pass a "
                        f"NumPy array (a PyTorch tensor that requires grad needs .detach() first)") from None


def state_dict(model) -> Dict[str, np.ndarray]:
    """Copies of the weights under the file's names: {"layers.0.kernel": (inputs, units), ...}."""
    from .serialization import layer_tensors

    model._require_built("state_dict")
    return {key: model.backend.to_host(value, copy=True) for key, value in layer_tensors(model).items()}


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("PyTorch is not installed; the PyTorch interoperability functions need it "
                          "(pip install torch)") from None
    return torch


def _activation_module(torch, activation: str, negative_slope: float):
    nn = torch.nn
    if activation == "relu":
        return nn.ReLU()
    if activation == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if activation == "sigmoid":
        return nn.Sigmoid()
    if activation == "tanh":
        return nn.Tanh()
    if activation == "gelu":
        # fusedtrain's GELU is the tanh approximation.
        return nn.GELU(approximate="tanh")
    return nn.Softmax(dim=-1)


def _plan(model, output: str, what: str) -> Tuple[List[Tuple[str, Any]], Dict[int, int]]:
    """The modules of the equivalent torch.nn.Sequential as (kind, argument) pairs, and the
    position in it of each Dense layer's nn.Linear."""
    from .layers import Activation, Dense, Dropout

    if output not in ("predict", "logits"):
        raise ValueError(f"output: expected 'predict' or 'logits', got {output!r}")
    model._require_built(what)
    link = model._link()
    fold = model._fold(model.loss)
    last = len(model.layers) - 1
    plan: List[Tuple[str, Any]] = []
    linear_positions: Dict[int, int] = {}
    for index, layer in enumerate(model.layers):
        # A last activation folded into the loss is the loss' link: predict applies it once.
        activation = None if (index == last and fold) else getattr(layer, "activation", None)
        if isinstance(layer, Dense):
            linear_positions[index] = len(plan)
            plan.append(("linear", layer))
        elif isinstance(layer, Dropout):
            plan.append(("dropout", layer.rate))
        elif not isinstance(layer, Activation):
            raise ValueError(f"layers[{index}]: no PyTorch equivalent is known for {type(layer).__name__}")
        if activation is not None:
            plan.append(("activation", (activation, layer.negative_slope)))
    if output == "predict" and link is not None:
        plan.append(("activation", (link, 0.0)))
    return plan, linear_positions


def to_torch(model, output: str = "predict"):
    """A ``torch.nn.Sequential`` equivalent to ``model``, holding a copy of its weights (float32,
    CPU, in eval mode): nn.Linear for Dense (weight = kernel.T), nn.Dropout for Dropout, and
    nn.ReLU / LeakyReLU / Sigmoid / Tanh / GELU(approximate="tanh") / Softmax(dim=-1) for the
    activations. ``output="predict"`` ends with the softmax or sigmoid that ``model.predict``
    applies for a classifier; ``"logits"`` stops before it (for torch's cross-entropy losses)."""
    torch = _torch()
    plan, _ = _plan(model, output, "to_torch")
    modules = []
    for kind, argument in plan:
        if kind == "linear":
            modules.append(torch.nn.Linear(argument.input_dim, argument.units, bias=argument.use_bias))
        elif kind == "dropout":
            modules.append(torch.nn.Dropout(argument))
        else:
            modules.append(_activation_module(torch, *argument))
    module = torch.nn.Sequential(*modules)
    module.load_state_dict(to_torch_state_dict(model, output))
    return module.eval()


def to_torch_state_dict(model, output: str = "predict") -> "OrderedDict[str, Any]":
    """The state dict of ``to_torch(model, output)``: {"{position}.weight": kernel.T,
    "{position}.bias": bias} as float32 CPU tensors (copies)."""
    torch = _torch()
    _, positions = _plan(model, output, "to_torch_state_dict")
    result: "OrderedDict[str, Any]" = OrderedDict()
    for index, position in positions.items():
        layer = model.layers[index]
        result[f"{position}.weight"] = torch.from_numpy(np.ascontiguousarray(model.backend.to_host(layer.kernel).T))
        if layer.use_bias:
            result[f"{position}.bias"] = torch.from_numpy(model.backend.to_host(layer.bias, copy=True))
    return result


def load_torch_state_dict(model, torch_state: Mapping[str, Any], output: str = "predict") -> None:
    """Sets ``model``'s weights from the state dict of a module laid out as ``to_torch(model,
    output)`` (e.g. one trained in PyTorch). Every tensor is checked (names, float32, shapes)
    before any weight changes; ValueError says what does not match."""
    _, positions = _plan(model, output, "load_torch_state_dict")
    expected = {}
    for index, position in positions.items():
        layer = model.layers[index]
        expected[f"{position}.weight"] = (index, "kernel", (layer.units, layer.input_dim))
        if layer.use_bias:
            expected[f"{position}.bias"] = (index, "bias", (layer.units,))
    missing = [key for key in expected if key not in torch_state]
    unexpected = [key for key in torch_state if key not in expected]
    if missing or unexpected:
        raise ValueError(f"state_dict: does not match this model: missing {missing or 'none'}, unexpected "
                         f"{unexpected or 'none'}")
    tensors: Dict[str, np.ndarray] = {}
    for key, (index, name, shape) in expected.items():
        value = torch_state[key]
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        if array.dtype != np.float32:
            raise ValueError(f"state_dict: {key} has dtype {array.dtype}, expected float32")
        if array.shape != shape:
            raise ValueError(f"state_dict: {key} has shape {array.shape}, expected {shape}")
        tensors[f"layers.{index}.{name}"] = array.T if name == "kernel" else array
    from .serialization import assign_weights, check_weights

    input_dim, arrays = check_weights(model, tensors, "state_dict")
    assign_weights(model, input_dim, arrays)


"""The registry: which fast kernel replaces which op, and the switch that installs them.

Each entry names an op (module and class) and the fast Function from this package that takes
its ``fast`` slot (``Function.apply`` uses it for "cuda" tensors while fast kernels are on).
Adam's, EMA's and gradient clipping's fused all-parameters updates, and ``unbroadcast``'s sum
of a broadcast gradient, go into their own slots the same way (``FAST_SLOTS``).
Ops are looked up by name when installing, so the registry can list ops of the layers above
this one (``minilean.optim``, ``minilean.models``) without importing them at import time; an
op that does not exist is reported, not fatal. (The kernel modules it imports do import the
autograd modules below, for ``Function`` and shared formulas.)
"""
import importlib

from minilean.cuda import (activations, adam, clip, ema, im2col, mse, noising, norm, reduce,
                           softmax)

FAST_FUNCTIONS = (
    ("minilean.autograd.elementwise", "Relu", activations.FastRelu),
    ("minilean.autograd.elementwise", "LeakyRelu", activations.FastLeakyRelu),
    ("minilean.autograd.elementwise", "Silu", activations.FastSilu),
    ("minilean.autograd.elementwise", "Gelu", activations.FastGelu),
    ("minilean.autograd.elementwise", "Sigmoid", activations.FastSigmoid),
    ("minilean.autograd.elementwise", "Tanh", activations.FastTanh),
    ("minilean.autograd.reduce", "Sum", reduce.FastSum),
    ("minilean.autograd.reduce", "Mean", reduce.FastMean),
    ("minilean.autograd.reduce", "Softmax", softmax.FastSoftmax),
    ("minilean.autograd.reduce", "LogSoftmax", softmax.FastLogSoftmax),
    ("minilean.autograd.norm", "LayerNorm", norm.FastLayerNorm),
    ("minilean.autograd.norm", "GroupNorm", norm.FastGroupNorm),
    ("minilean.autograd.loss", "MseLoss", mse.FastMseLoss),
    ("minilean.autograd.conv", "Conv2d", im2col.FastConv2d),
    ("minilean.autograd.conv", "ConvTranspose2d", im2col.FastConvTranspose2d),
    ("minilean.models.diffusion", "QSample", noising.FastQSample),
)

# (module, class, slot, function with the signature of the plain code it stands in for); a
# class of None puts the function in a slot of the module itself
FAST_SLOTS = (
    ("minilean.optim.adam", "Adam", "fast_update", adam.fused_adam_update),
    ("minilean.optim.ema", "EMA", "fast_update_arrays", ema.fused_ema_update),
    ("minilean.optim.clip", None, "fast_clip_arrays", clip.fused_clip_arrays),
    ("minilean.autograd.function", None, "fast_sum_kept", reduce.sum_kept),
)


def _find(module_name, class_name):
    """The class (the module itself for a class of None), or None when the module or the
    class does not exist (yet)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return module if class_name is None else getattr(module, class_name, None)


def _slot_name(module_name, class_name, slot):
    return f"{module_name}.{class_name or slot}"


def install(enabled=True):
    """Fill (or, with ``enabled=False``, empty) every fast slot; return the names of the
    entries whose op or class was not found."""
    missing = []
    for module_name, class_name, fast in FAST_FUNCTIONS:
        op = _find(module_name, class_name)
        if op is None:
            missing.append(f"{module_name}.{class_name}")
            continue
        # it runs the op where its kernels do not cover a call, keeping what the op keeps
        fast.replaces, fast.keeps_output = op, op.keeps_output
        op.fast = fast if enabled else None
    for module_name, class_name, slot, function in FAST_SLOTS:
        owner = _find(module_name, class_name)
        if owner is None:
            missing.append(_slot_name(module_name, class_name, slot))
            continue
        # a class's slot holds a staticmethod, so that instances do not bind it
        slot_value = function if class_name is None else staticmethod(function)
        setattr(owner, slot, slot_value if enabled else None)
    return missing


def installed():
    """{'module.Class' (or 'module.slot'): fast Function or fused update} for every slot that
    is filled now."""
    filled = {}
    for module_name, class_name, _ in FAST_FUNCTIONS:
        op = _find(module_name, class_name)
        if op is not None and op.fast is not None:
            filled[f"{module_name}.{class_name}"] = op.fast
    for module_name, class_name, slot, _ in FAST_SLOTS:
        owner = _find(module_name, class_name)
        if owner is not None and getattr(owner, slot) is not None:
            filled[_slot_name(module_name, class_name, slot)] = getattr(owner, slot)
    return filled

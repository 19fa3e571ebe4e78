"""lstm_core's native CPU kernel: the whole LSTM time loop as one TensorFlow op, plus its BPTT.

Why: in TensorFlow every step of the loop dispatches a MatMul and ~10 element-wise ops, which
costs more than the arithmetic at the sizes the tasks use. ``LstmCoreSequence`` runs all steps in
C++ (per step one GEMM ``[x_t, h]·[W; U] + b`` and the gate math fused over the step's
``[B, 4H]`` block, so the projected inputs never go through memory);
``LstmCoreSequenceGrad`` is registered as its gradient (per step the fused gate derivatives and
one GEMM ``dz·Uᵀ``); ``dU``, ``dW``, ``dx`` and ``db`` are single TensorFlow matmuls of ``dz``
after the loop.

The op library is compiled on first use (:mod:`lstm_core.kernels.build`), never at import. If
that fails the layer logs one warning and keeps the pure-TensorFlow loop. ``LSTM_CORE_KERNEL``
chooses: ``native`` (fail loudly if the kernel cannot be built), ``tf`` (never use it), unset or
``auto`` (use it when it builds).

Every graph that is run uses the op; graphs traced for export never do (see
:func:`portable_graphs`), so a SavedModel or ``.tflite`` loads where the op library is not.

bf16: under ``mixed_bfloat16`` the per-step GEMM takes bf16 inputs with fp32 accumulation (the
cell state and gate math stay fp32, as in oneDNN) where the CPU runs ``vdpbf16ps``
(``avx512_bf16``); elsewhere the kernel computes in fp32, which is faster there than emulating
bf16. ``LSTM_CORE_BF16_GEMM`` chooses: unset or ``auto`` (as just said), ``on`` (bf16 GEMM
inputs everywhere, in a portable loop where the CPU lacks the instruction: same numbers, slower),
``off`` (fp32 GEMM always).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

import tensorflow as tf

from lstm_core.kernels.build import KernelBuildError

log = logging.getLogger(__name__)

CHOICE_ENV = "LSTM_CORE_KERNEL"
SEQUENCE_OP = "LstmCoreSequence"
CHOICES = ("auto", "native", "tf")
BF16_ENV = "LSTM_CORE_BF16_GEMM"
BF16_CHOICES = ("auto", "on", "off")
GEMM_PRECISIONS = ("float32", "bfloat16", "bfloat16_portable")

_lock = threading.Lock()
_ops = None
_failure: str | None = None
_native_bf16: bool | None = None
_inference_scope = threading.local()
_portable_scope = threading.local()


def kernel_choice() -> str:
    """``$LSTM_CORE_KERNEL`` (``auto`` when unset), read on every call so tests can switch it."""
    choice = os.environ.get(CHOICE_ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"{CHOICE_ENV} must be one of {CHOICES}, got {choice!r}")
    return choice


def native_ops():
    """The loaded op module, building it on the first call; ``None`` if it cannot be built.

    Raises:
        KernelBuildError: the build failed and ``LSTM_CORE_KERNEL=native`` demands the kernel.
    """
    global _ops, _failure
    with _lock:
        if _ops is None and _failure is None:
            try:
                from lstm_core.kernels.build import build

                _ops = tf.load_op_library(str(build()))
                _register_gradient()
            except (KernelBuildError, tf.errors.OpError, OSError) as err:
                _failure = str(err)
                if kernel_choice() != "native":
                    log.warning("lstm_core: native LSTM kernel unavailable, using the TensorFlow "
                                "loop (%s)", _failure.splitlines()[0] if _failure else "")
    if _ops is None and kernel_choice() == "native":
        raise KernelBuildError(f"{CHOICE_ENV}=native but the kernel could not be built: {_failure}")
    return _ops


def native_kernel_enabled() -> bool:
    """Whether lstm_core.LSTM may run its loop in the native kernel (builds it if needed)."""
    if kernel_choice() == "tf":
        return False
    return native_ops() is not None


def native_bf16_available() -> bool:
    """Whether the loaded kernel runs its bf16 GEMM with ``vdpbf16ps`` (the compiler knew the
    instruction and this CPU has ``avx512_bf16``); ``False`` when the kernel is unavailable."""
    global _native_bf16
    if _native_bf16 is None:
        ops = native_ops() if kernel_choice() != "tf" else None
        if ops is None:
            return False
        with tf.init_scope():
            _native_bf16 = bool(ops.lstm_core_native_bf16().numpy())
    return _native_bf16


def gemm_precision_for(compute_dtype: str) -> str:
    """The kernel's GEMM precision for a layer computing in ``compute_dtype`` (see the module
    docstring for ``$LSTM_CORE_BF16_GEMM``)."""
    choice = os.environ.get(BF16_ENV, "auto").strip().lower() or "auto"
    if choice not in BF16_CHOICES:
        raise ValueError(f"{BF16_ENV} must be one of {BF16_CHOICES}, got {choice!r}")
    if compute_dtype != "bfloat16" or choice == "off":
        return "float32"
    if choice == "on" or native_bf16_available():
        return "bfloat16"
    return "float32"


@contextlib.contextmanager
def _deeper(scope):
    depth = getattr(scope, "depth", 0)
    scope.depth = depth + 1
    try:
        yield
    finally:
        scope.depth = depth


def native_inference():
    """Let inference graphs (``training=False``) traced in this block skip the gradient's activations.

    Every graph that is run uses the kernel; by default it keeps the ``[B, T, 4H]`` activations a
    gradient needs, because a ``tf.function`` may later be called under a ``GradientTape``. Graphs
    traced here with ``training=False`` keep them in small per-thread buffers instead (faster), and
    then cannot be differentiated.

    Example:

    ```python
    with lstm_core.kernels.native_inference():
        serve = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    ```
    """
    return _deeper(_inference_scope)


def in_native_inference_scope() -> bool:
    """Whether this thread is inside :func:`native_inference`."""
    return getattr(_inference_scope, "depth", 0) > 0


def portable_graphs():
    """Graphs traced in this block (or by a function decorated with it) never use the native op.

    For exporters that trace a serving function before they save it: the SavedModel must load in
    a process without the op library. ``tf.saved_model.save``, Keras' ``model.export`` and the
    TFLite converter are recognised on their own.

    Example:

    ```python
    with lstm_core.kernels.portable_graphs():
        serve = tf.function(model, input_signature=[spec]).get_concrete_function()
    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    ```
    """
    return _deeper(_portable_scope)


def in_portable_scope() -> bool:
    """Whether this thread is inside :func:`portable_graphs`."""
    return getattr(_portable_scope, "depth", 0) > 0


def lstm_sequence(
    x, kernel, bias, h0, c0, recurrent_kernel, mask=None, go_backwards=False,
    zero_output_for_mask=False, save_for_backward=True, gemm_precision="float32",
):
    """The LSTM of :func:`lstm_core.recurrence.recurrence` (tanh / sigmoid) in the kernel.

    The input projection ``x·W + b`` runs inside the loop, step by step, together with ``h·U``:
    the ``[B, T, 4H]`` projected inputs never go through memory. Batch-major throughout, as Keras
    hands tensors over, so no transposes surround the op.

    Args:
        x: ``[B, T, I]`` float32 inputs.
        kernel, bias: ``W`` ``[I, 4H]`` and ``b`` ``[4H]`` (gates i, f, c, o).
        h0, c0: ``[B, H]`` initial state.
        recurrent_kernel: ``U``, ``[H, 4H]``.
        mask: optional ``[B, T]`` (bool or 0/1): masked steps carry the state over.
        go_backwards: process the sequence from its last time step to its first.
        zero_output_for_mask: masked steps output zeros instead of the previous output.
        save_for_backward: keep the activations the gradient needs ([B, T, 4H] gates, cells,
            entering h). False (inference) keeps them in small per-thread buffers instead:
            faster, and the op then has no gradient.
        gemm_precision: ``"float32"``; ``"bfloat16"``: the per-step GEMM rounds ``[x_t, h]`` and
            ``[W; U]`` to bf16 and accumulates in fp32 (``vdpbf16ps`` where the CPU has it, else a
            portable loop with the same results); ``"bfloat16_portable"``: always that loop.
            The gradient is computed as for fp32 (straight through the rounding).

    Returns:
        ``(outputs [B, T, H] in processing order, h [B, H], c [B, H])``; differentiable
        w.r.t. everything but the mask.

    Example:

    ```python
    x = tf.random.normal([2, 5, 3])
    outputs, h, c = lstm_sequence(x, tf.zeros([3, 16]), tf.zeros([16]), tf.zeros([2, 4]),
                                  tf.zeros([2, 4]), tf.zeros([4, 16]))
    ```
    """
    ops = native_ops()
    if ops is None:
        raise KernelBuildError(f"the native LSTM kernel is not available: {_failure}")
    if gemm_precision not in GEMM_PRECISIONS:
        raise ValueError(f"gemm_precision must be one of {GEMM_PRECISIONS}, got {gemm_precision!r}")
    mask = tf.zeros((0, 0), tf.float32) if mask is None else tf.cast(mask, tf.float32)
    outputs, h, c, *_ = ops.lstm_core_sequence(
        x, kernel, bias, h0, c0, recurrent_kernel, mask,
        go_backwards=bool(go_backwards), zero_output_for_mask=bool(zero_output_for_mask),
        save_for_backward=bool(save_for_backward), gemm_precision=gemm_precision,
    )
    return outputs, h, c


def _register_gradient():
    """Register the BPTT op as the gradient of ``LstmCoreSequence`` (once per process)."""
    try:
        tf.RegisterGradient(SEQUENCE_OP)(_sequence_gradient)
    except KeyError:  # already registered: the module was reloaded
        pass


def _sequence_gradient(op, d_outputs, d_h, d_c, *_unused_internal_grads):
    """Gradients for ``(x, kernel, bias, h0, c0, recurrent_kernel, mask)``.

    The BPTT op returns ``dz`` (the gradient of the gates' pre-activations, by input time); every
    weight gradient is one big matmul of it. The last three forward outputs (gates, cells, the h
    entering each step) exist for this function only; gradients flowing into them are ignored.
    """
    if not op.get_attr("save_for_backward"):
        raise ValueError(
            "LstmCoreSequence ran with save_for_backward=False (inference): it has no gradient; "
            "call the layer with training=True or outside lstm_core.kernels.native_inference()"
        )
    x, kernel, _, _, c0, recurrent_kernel, mask = op.inputs
    outputs, h, c, gates, cells, h_prev = op.outputs
    d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
    d_h = tf.zeros_like(h) if d_h is None else d_h
    d_c = tf.zeros_like(c) if d_c is None else d_c
    d_z, d_h0, d_c0 = _ops.lstm_core_sequence_grad(
        recurrent_kernel, mask, c0, gates, cells, d_outputs, d_h, d_c,
        go_backwards=op.get_attr("go_backwards"),
        zero_output_for_mask=op.get_attr("zero_output_for_mask"),
    )
    units, inputs = tf.shape(recurrent_kernel)[0], tf.shape(kernel)[0]
    # x, h_prev and dz are all indexed by input time: each product is one [B·T, ·] matmul
    d_z_rows = tf.reshape(d_z, [-1, 4 * units])
    x_rows = tf.reshape(x, [-1, inputs])
    d_recurrent_kernel = tf.matmul(tf.reshape(h_prev, [-1, units]), d_z_rows, transpose_a=True)
    d_kernel = tf.matmul(x_rows, d_z_rows, transpose_a=True)
    d_x = tf.reshape(tf.matmul(d_z_rows, kernel, transpose_b=True), tf.shape(x))
    d_bias = tf.reduce_sum(d_z_rows, axis=0)
    return d_x, d_kernel, d_bias, d_h0, d_c0, d_recurrent_kernel, None


__all__ = [
    "BF16_CHOICES",
    "BF16_ENV",
    "CHOICE_ENV",
    "CHOICES",
    "GEMM_PRECISIONS",
    "gemm_precision_for",
    "KernelBuildError",
    "in_native_inference_scope",
    "in_portable_scope",
    "kernel_choice",
    "lstm_sequence",
    "native_inference",
    "native_bf16_available",
    "native_kernel_enabled",
    "native_ops",
    "portable_graphs",
    "SEQUENCE_OP",
]

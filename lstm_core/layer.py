"""``lstm_core.LSTM``: a whole-sequence LSTM layer, drop-in for ``keras.layers.LSTM``.

Why it exists: Keras 3's LSTM on CPU runs ``x·W`` inside its per-step loop and exports to
TFLite as a ``WHILE`` loop. This layer
  * projects the inputs of all time steps with one matmul outside the recurrence, so only
    ``h·U`` stays in the loop (the fast path), and
  * runs that recurrence inside a ``tf.function`` tagged ``api_implements="lstm_<id>"`` with the
    argument order of tf_keras's ``standard_lstm``. The TFLite MLIR converter recognises it and
    emits the builtin ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op (see ``lstm_core.export``).

``mode`` switches inference behaviour (kws_streaming style):
  * ``"auto"``  (default) masks, recurrent dropout and custom activations take the general loop;
    everything else takes the fusable function.
  * ``"fused"`` always take the fusable function and ignore masks. Exporters set this while
    tracing; it assumes inputs without padding (batch 1 at its true length, or full windows).

On a visible GPU, ``use_cudnn="auto"`` (as in ``keras.layers.LSTM``) runs the whole sequence in
cuDNN when the arguments allow it (:mod:`lstm_core.cudnn`: tanh/sigmoid, a bias, no recurrent
dropout while training, no ``unroll``, no mask or a right-padded one); exports never do.

Where the native kernel (:mod:`lstm_core.kernels`) builds, ``"auto"`` runs the time loop in it
(masks included) for eager calls and every graph that is run: training graphs, Keras'
predict/evaluate steps and a user's own ``tf.function``. Graphs traced for an export keep the
pure-TensorFlow loop, so a SavedModel or ``.tflite`` loads where the op library is not: those
traced while ``tf.saved_model.save`` runs (its save context), by Keras' exporters
(``model.export``, ``ExportArchive``) or by the TFLite converter, and XLA graphs. A
``tf.function`` that ran with the kernel is traced again by ``tf.saved_model.save`` (its save
context is part of the trace key), so saving it is safe. A *concrete* function traced for
running and then passed as a signature keeps the op: trace such functions inside
:func:`lstm_core.kernels.portable_graphs`.
"""

from __future__ import annotations

import sys
import uuid

import keras
import numpy as np
import tensorflow as tf
from keras.src.utils.tracking import no_automatic_dependency_tracking
from tensorflow.python.ops import control_flow_util
from tensorflow.python.saved_model import save_context

from lstm_core import cudnn, kernels
from lstm_core.cell import LSTMCell
from lstm_core.recurrence import recurrence

__all__ = ["LSTM", "MODES", "make_fusable_lstm"]

MODES = ("auto", "fused")

_CELL_ARGS = (
    "activation",
    "recurrent_activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "unit_forget_bias",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "dropout",
    "recurrent_dropout",
    "seed",
)


def _project_inputs(inputs, kernel, bias, go_backwards):
    """Batch-major inputs [B, T, I] -> time-major projections [T, B, 4H], one matmul for all steps."""
    x_tm = tf.transpose(inputs, [1, 0, 2])
    if go_backwards:
        x_tm = tf.reverse(x_tm, [0])
    steps, batch = tf.shape(x_tm)[0], tf.shape(x_tm)[1]
    xw = tf.matmul(tf.reshape(x_tm, [-1, tf.shape(kernel)[0]]), kernel) + bias
    return tf.reshape(xw, [steps, batch, tf.shape(kernel)[1]])


# Modules whose frames on the stack mean "this trace is for an export, not for running".
_EXPORT_TRACERS = (
    "lstm_core.export", "keras.src.export", "tensorflow.lite.python", "tensorflow.python.saved_model"
)


def _traced_for_export() -> bool:
    """Whether an exporter (Keras' ``export``, the TFLite converter, SavedModel save) is tracing."""
    if save_context.in_save_context() or kernels.in_portable_scope():
        return True
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_EXPORT_TRACERS):
            return True
        frame = frame.f_back
    return False


def make_fusable_lstm(go_backwards: bool, unroll: bool = False):
    """A ``tf.function`` the TFLite converter turns into ``UNIDIRECTIONAL_SEQUENCE_LSTM``.

    Signature and attributes follow tf_keras's ``standard_lstm`` (what the converter's
    ``prepare-composite-functions`` pass matches): six arguments
    ``(inputs, init_h, init_c, kernel, recurrent_kernel, bias)`` and five results
    ``(last_output, outputs, h, c, runtime)``. Each function gets a unique ``lstm_<id>`` name.
    """

    def standard_lstm(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
        xw_tm = _project_inputs(inputs, kernel, bias, go_backwards)
        outputs_tm, h, c = recurrence(xw_tm, init_h, init_c, recurrent_kernel, unroll=unroll)
        outputs = tf.transpose(outputs_tm, [1, 0, 2])
        return outputs_tm[-1], outputs, h, c, tf.constant(0.0)

    return tf.function(
        standard_lstm,
        autograph=False,
        experimental_attributes={
            "api_implements": f"lstm_{uuid.uuid4().hex}",
            "api_preferred_device": "CPU",
            "time_major": False,
            "go_backwards": bool(go_backwards),
        },
    )


def _gradient_possible(training) -> bool:
    """Whether a gradient may be taken through this call (the kernel then keeps its activations).

    Only two cases are sure to be inference: an eager call with no gradient tape recording, and
    a graph traced inside :func:`lstm_core.kernels.native_inference` with ``training=False``.
    Everything else (any training call, Keras' step graphs, a tape) keeps them.
    """
    training = isinstance(training, (bool, np.bool_)) and bool(training)
    if training:
        return True
    if not tf.inside_function():
        from tensorflow.python.eager import record

        return bool(record.could_possibly_record())
    return not kernels.in_native_inference_scope()


def _check_choices(mode, use_cudnn) -> None:
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    if use_cudnn not in ("auto", True, False):
        raise ValueError(f"`use_cudnn` must be 'auto', True or False, got {use_cudnn!r}.")


@keras.saving.register_keras_serializable(package="lstm_core")
class LSTM(keras.layers.Layer):
    """Long Short-Term Memory layer with the arguments and weights of ``keras.layers.LSTM``.

    A drop-in replacement that runs faster on CPU (one input projection for all steps, a native
    C++ time loop where it builds, cuDNN on a GPU) and exports to TFLite/LiteRT and TFLM as the
    builtin fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op instead of a ``WHILE`` loop. Weights:
    ``cell.kernel (I, 4H)``, ``cell.recurrent_kernel (H, 4H)``, ``cell.bias (4H,)``, gate order
    i, f, c, o, so ``set_weights(keras_lstm.get_weights())`` works both ways.

    Args:
        units: dimensionality of the output space (H).
        activation, recurrent_activation, use_bias, kernel_initializer,
            recurrent_initializer, bias_initializer, unit_forget_bias, kernel_regularizer,
            recurrent_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
            recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed: as in
            ``keras.layers.LSTM`` (the cell's arguments; see :class:`lstm_core.LSTMCell`).
        return_sequences: return the output of every step ``(B, T, H)`` instead of the last
            ``(B, H)``.
        return_state: also return the final ``h`` and ``c``.
        go_backwards: process the sequence backwards (and return it reversed, as Keras does).
        stateful: keep the final state of batch ``i`` as the initial state of batch ``i`` of the
            next call (needs a fixed batch size; ``reset_states()`` zeroes it).
        zero_output_for_mask: masked steps output zeros instead of the previous output.
        unroll: unroll the time loop (short fixed-length sequences only).
        mode: ``"auto"`` (default): calls with a mask, recurrent dropout or non-standard
            activations take the general TensorFlow loop, the others the fusable function
            (or the native kernel / cuDNN where available). ``"fused"``: always the fusable
            function, masks ignored; exporters set it while tracing (it assumes inputs without
            padding: batch 1 at its true length, or full windows) and it needs ``tanh`` /
            ``sigmoid`` activations.
        use_cudnn: ``"auto"`` (default): on a visible GPU, run the whole sequence in cuDNN when
            the arguments allow it (tanh/sigmoid, a bias, no recurrent dropout while training,
            no ``unroll``, no mask or a right-padded one; :mod:`lstm_core.cudnn`), otherwise
            the other paths. ``True``: require cuDNN (ValueError, naming the reason, when it
            cannot run). ``False``: never. Exports never use cuDNN.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype`` ...).

    Call arguments:
        sequences: ``(B, T, I)`` float tensor.
        initial_state: optional ``[h0, c0]``, each ``(B, H)``.
        mask: optional ``(B, T)`` boolean mask (e.g. from ``Embedding(mask_zero=True)``).
        training: whether dropout applies.

    Returns:
        ``(B, H)`` (or ``(B, T, H)`` with ``return_sequences``); with ``return_state`` the list
        ``[output, h, c]``.

    Example:

    ```python
    import keras
    import lstm_core

    inputs = keras.Input((None, 8))
    x = lstm_core.LSTM(32, return_sequences=True)(inputs)
    x = lstm_core.LSTM(16)(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))

    from lstm_core.export import export_tflite
    export_tflite(model, "model.tflite")   # one UNIDIRECTIONAL_SEQUENCE_LSTM per layer
    ```
    """

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        zero_output_for_mask=False,
        unroll=False,
        mode="auto",
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        _check_choices(mode, use_cudnn)
        arguments = locals()  # the cell's arguments are named once, in _CELL_ARGS (get_config too)
        self.cell = LSTMCell(
            units,
            **{name: arguments[name] for name in _CELL_ARGS},
            dtype=kwargs.get("dtype"),
            # unique per layer (Keras uses "lstm_cell" for all): ``step`` called on two layers
            # inside one functional model would otherwise create two operations of one name
            name=f"{self.name}_cell",
        )
        self.units = self.cell.units
        self.return_sequences = return_sequences
        self.return_state = return_state
        self.go_backwards = go_backwards
        self.stateful = stateful
        self.zero_output_for_mask = zero_output_for_mask
        self.unroll = unroll
        self.mode = mode
        self.use_cudnn = use_cudnn
        self.supports_masking = True
        # XLA compiles this loop into a train step ~10x slower than graph mode (measured by
        # tools/benchmark_lstm.py), so Keras' jit_compile="auto" (which turns XLA on with a
        # GPU) must leave models containing this layer in graph mode.
        self.supports_jit = False
        self.input_spec = keras.layers.InputSpec(ndim=3)
        self.states = None
        self._eager_fusable_fns = {}

    # -- building ---------------------------------------------------------------------------
    def build(self, sequences_shape, initial_state_shape=None):
        self.cell.build(tuple(sequences_shape[-1:]))
        if self.stateful:
            batch = sequences_shape[0]
            if batch is None:
                raise ValueError(
                    "A stateful LSTM needs a fixed batch size: pass `batch_shape` to keras.Input."
                )
            self._create_state_variables(batch)

    @no_automatic_dependency_tracking
    def _create_state_variables(self, batch):
        # Not weights (as in keras.layers.LSTM): get_weights() stays [kernel, recurrent, bias].
        self.states = [
            keras.Variable(tf.zeros((batch, self.units)), trainable=False, name=n)
            for n in ("state_h", "state_c")
        ]

    def reset_states(self):
        if self.states is not None:
            for s in self.states:
                s.assign(tf.zeros_like(s))

    reset_state = reset_states

    def get_initial_state(self, batch_size):
        return self.cell.get_initial_state(batch_size)

    # -- forward ----------------------------------------------------------------------------
    def _uses_standard_activations(self):
        return (
            self.cell.activation is keras.activations.tanh
            and self.cell.recurrent_activation is keras.activations.sigmoid
        )

    def _uses_native_kernel(self, training, recurrent_dropout_mask) -> bool:
        """Whether this call runs its loop in the native kernel (see the module docstring)."""
        if (
            self.mode != "auto"
            or recurrent_dropout_mask is not None
            or not self._uses_standard_activations()
            or self.compute_dtype not in ("float32", "bfloat16", "float16")
            or kernels.kernel_choice() == "tf"
        ):
            return False
        if tf.inside_function():
            graph = tf.compat.v1.get_default_graph()
            # XLA cannot compile a custom op; a SavedModel or .tflite must not reference one
            if control_flow_util.GraphOrParentsInXlaContext(graph) or _traced_for_export():
                return False
        return kernels.native_kernel_enabled()

    def fusable_function(self, sequences):
        """An ``api_implements`` function for this call, with a name unique to its trace.

        Grappler's implementation selector keys functions by that name: two traces (say two
        batch sizes, or the layer reused in one graph) sharing a name get their bodies mixed
        up. So every graph trace gets a fresh function; eager calls reuse one per input spec.
        """
        if tf.inside_function():
            return make_fusable_lstm(self.go_backwards, unroll=self.unroll)
        key = (tuple(sequences.shape), sequences.dtype)
        if key not in self._eager_fusable_fns:
            self._eager_fusable_fns[key] = make_fusable_lstm(self.go_backwards, unroll=self.unroll)
        return self._eager_fusable_fns[key]

    def call(self, sequences, initial_state=None, mask=None, training=False):
        sequences = tf.convert_to_tensor(sequences, dtype=self.compute_dtype)
        if initial_state is None:
            if self.stateful:
                initial_state = self.states
            else:
                initial_state = self.cell.get_initial_state(tf.shape(sequences)[0])
        h0, c0 = (tf.convert_to_tensor(s, dtype=self.compute_dtype) for s in initial_state)
        sequences, recurrent_dropout_mask = self._dropout(sequences, h0, training)
        if self.mode == "fused":
            if not self._uses_standard_activations():
                raise ValueError(
                    "mode='fused' (TFLite UNIDIRECTIONAL_SEQUENCE_LSTM) needs activation='tanh' "
                    "and recurrent_activation='sigmoid'."
                )
            mask = None
            recurrent_dropout_mask = None
        last, outputs, h, c = self._run(sequences, h0, c0, mask, recurrent_dropout_mask, training)
        if self.stateful:
            self.states[0].assign(h)
            self.states[1].assign(c)
        output = outputs if self.return_sequences else last
        if self.return_state:
            return output, h, c
        return output

    def _dropout(self, sequences, h0, training):
        """``(sequences with input dropout, recurrent dropout mask or None)``; one mask per
        sequence, shared by all its steps (as in Keras)."""
        cell = self.cell
        if training and 0.0 < cell.dropout < 1.0:
            keep = keras.random.dropout(
                tf.ones_like(sequences[:, :1, :]), cell.dropout, seed=cell.seed_generator
            )
            sequences = sequences * keep
        recurrent_dropout_mask = None
        if training and 0.0 < cell.recurrent_dropout < 1.0:
            recurrent_dropout_mask = keras.random.dropout(
                tf.ones_like(h0), cell.recurrent_dropout, seed=cell.seed_generator
            )
        return sequences, recurrent_dropout_mask

    def _run(self, sequences, h0, c0, mask, recurrent_dropout_mask, training):
        """``(last output, outputs, h, c)`` from the first path that can run this call: cuDNN,
        the native kernel, the fusable function, the general TensorFlow loop."""
        cell = self.cell
        if self._uses_cudnn(training):
            return self._cudnn_or_loop(sequences, h0, c0, mask, recurrent_dropout_mask)
        if self._uses_native_kernel(training, recurrent_dropout_mask):
            outputs, h, c = self._native_kernel(sequences, h0, c0, mask, training)
            return outputs[:, -1], outputs, h, c
        if mask is None and recurrent_dropout_mask is None and self._uses_standard_activations():
            last, outputs, h, c, _ = self.fusable_function(sequences)(
                sequences,
                h0,
                c0,
                tf.convert_to_tensor(cell.kernel),
                tf.convert_to_tensor(cell.recurrent_kernel),
                cell.zero_bias(),
            )
            return last, outputs, h, c
        return self._tf_loop(sequences, h0, c0, mask, recurrent_dropout_mask)

    def _native_kernel(self, sequences, h0, c0, mask, training):
        """The loop in the native kernel: batch-major all the way, x·W + b projected inside it.

        The kernel's tensors are float32; under a mixed policy (``mixed_bfloat16``/``mixed_float16``)
        inputs, state and the (autocast) weights are cast to float32 and the results back, so the
        layer keeps the kernel instead of falling back to the TensorFlow loop. Under bfloat16 the
        per-step GEMM takes bf16 inputs where the CPU has ``vdpbf16ps``
        (:func:`lstm_core.kernels.gemm_precision_for`); cell state and gates stay float32.
        """
        cell = self.cell
        as_float = lambda t: tf.cast(tf.convert_to_tensor(t), tf.float32)  # noqa: E731
        outputs, h, c = kernels.lstm_sequence(
            as_float(sequences), as_float(cell.kernel), as_float(cell.zero_bias()), as_float(h0), as_float(c0),
            as_float(cell.recurrent_kernel), mask=mask, go_backwards=self.go_backwards,
            zero_output_for_mask=self.zero_output_for_mask, save_for_backward=_gradient_possible(training),
            gemm_precision=kernels.gemm_precision_for(self.compute_dtype),
        )
        return tuple(tf.cast(t, self.compute_dtype) for t in (outputs, h, c))

    def _tf_loop(self, sequences, h0, c0, mask, recurrent_dropout_mask):
        """The general TensorFlow loop (masks, recurrent dropout, any activation)."""
        cell = self.cell
        mask_tm = None
        if mask is not None:
            mask_tm = tf.transpose(tf.cast(mask, tf.bool), [1, 0])
            if self.go_backwards:
                mask_tm = tf.reverse(mask_tm, [0])
        xw_tm = _project_inputs(sequences, cell.kernel, cell.zero_bias(), self.go_backwards)
        outputs_tm, h, c = recurrence(
            xw_tm,
            h0,
            c0,
            tf.convert_to_tensor(cell.recurrent_kernel),
            cell.activation,
            cell.recurrent_activation,
            mask_tm=mask_tm,
            recurrent_dropout_mask=recurrent_dropout_mask,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
        )
        return outputs_tm[-1], tf.transpose(outputs_tm, [1, 0, 2]), h, c

    def _uses_cudnn(self, training) -> bool:
        """cuDNN on a visible GPU when the arguments allow it (:mod:`lstm_core.cudnn`).

        Never while a SavedModel is being written: exports must run without a GPU.
        """
        if self.use_cudnn is False or self.mode != "auto" or save_context.in_save_context():
            return False
        if self.use_cudnn == "auto" and not cudnn.gpu_available():  # the CPU case, every call: cheap
            return False
        training = bool(training) if isinstance(training, (bool, np.bool_)) else training is not None
        reason = cudnn.cudnn_fallback_reason(self, training=training)
        if reason is None and not cudnn.gpu_available():
            reason = "no GPU is visible"
        if reason is not None and self.use_cudnn is True:
            raise ValueError(f"use_cudnn=True, but cuDNN cannot run this layer: {reason}.")
        return reason is None

    def _cudnn_or_loop(self, sequences, h0, c0, mask, recurrent_dropout_mask):
        """cuDNN for unmasked and right-padded input; other masks take the TF loop (as in Keras)."""

        def with_cudnn():
            outputs, h, c = cudnn.cudnn_lstm(self, sequences, h0, c0, mask)
            return h, outputs, h, c

        if mask is None:
            return with_cudnn()

        def with_loop():
            return self._tf_loop(sequences, h0, c0, mask, recurrent_dropout_mask)

        allowed = cudnn.mask_allows_cudnn(mask)
        if not tf.inside_function():
            return with_cudnn() if bool(allowed) else with_loop()
        return tf.cond(allowed, with_cudnn, with_loop)

    def step(self, inputs, states):
        """One time step with explicit state, sharing this layer's weights (streaming/decoding)."""
        return self.cell(inputs, states)

    # -- shapes, masks, config -------------------------------------------------------------
    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, steps = sequences_shape[0], sequences_shape[1]
        out = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return out, (batch, self.units), (batch, self.units)
        return out

    def compute_mask(self, inputs, mask=None):
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask, None, None]
        return output_mask

    def get_config(self):
        cell_config = self.cell.get_config()
        config = {
            "units": self.units,
            **{k: cell_config[k] for k in _CELL_ARGS},
            "activity_regularizer": keras.saving.serialize_keras_object(
                self.activity_regularizer
            ),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "zero_output_for_mask": self.zero_output_for_mask,
            "unroll": self.unroll,
            "mode": self.mode,
            "use_cudnn": self.use_cudnn,
        }
        return {**super().get_config(), **config}

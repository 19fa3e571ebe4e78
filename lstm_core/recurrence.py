"""The LSTM time loop over pre-projected inputs (time-major).

``x·W + b`` for all steps is computed before the loop (one matmul); only ``h·U`` runs per
step. With a static number of steps and ``unroll=True`` the loop is unrolled in the graph
(no while-loop control overhead; autodiff then needs no TensorList accumulators).
Masks follow ``keras.backend.rnn``: a masked step carries (h, c) over and emits the previous
output (or zeros with ``zero_output_for_mask``).

This is the reference loop: exports trace it, and it runs wherever the native kernel does not
(:mod:`lstm_core.kernels` implements the same recurrence, masks included, in C++; its tests check
it against this function's results).
"""

from __future__ import annotations

import tensorflow as tf

from lstm_core.cell import lstm_step

__all__ = ["recurrence"]


def _while(steps, body, loop_vars):
    """``tf.while_loop`` over ``steps`` iterations with the settings Keras uses for RNNs."""
    return tf.while_loop(
        lambda t, *_: t < steps,
        body,
        loop_vars,
        maximum_iterations=steps,
        parallel_iterations=32,
        swap_memory=True,
    )


def recurrence(
    xw_tm,
    h0,
    c0,
    recurrent_kernel,
    activation=tf.tanh,
    recurrent_activation=tf.sigmoid,
    mask_tm=None,
    recurrent_dropout_mask=None,
    zero_output_for_mask=False,
    unroll=False,
):
    """``xw_tm`` [T, B, 4H]; ``mask_tm`` [T, B] bool. Returns ``(outputs_tm, h, c)``."""
    if unroll and xw_tm.shape[0] is not None:
        return _unrolled(
            xw_tm, h0, c0, recurrent_kernel, activation, recurrent_activation,
            mask_tm, recurrent_dropout_mask, zero_output_for_mask,
        )
    steps = tf.shape(xw_tm)[0]
    xw_ta = tf.TensorArray(xw_tm.dtype, size=steps).unstack(xw_tm)
    out_ta = tf.TensorArray(xw_tm.dtype, size=steps)
    mask_ta = None
    if mask_tm is not None:
        mask_ta = tf.TensorArray(tf.bool, size=steps).unstack(mask_tm)

    if mask_ta is None:

        def body(t, h, c, out_ta):
            h_in = h if recurrent_dropout_mask is None else h * recurrent_dropout_mask
            z = xw_ta.read(t) + tf.matmul(h_in, recurrent_kernel)
            h, c = lstm_step(z, c, activation, recurrent_activation)
            return t + 1, h, c, out_ta.write(t, h)

        _, h, c, out_ta = _while(steps, body, (tf.constant(0), h0, c0, out_ta))
        return out_ta.stack(), h, c

    def masked_body(t, h, c, prev_out, out_ta):
        h_in = h if recurrent_dropout_mask is None else h * recurrent_dropout_mask
        z = xw_ta.read(t) + tf.matmul(h_in, recurrent_kernel)
        h_new, c_new = lstm_step(z, c, activation, recurrent_activation)
        m = mask_ta.read(t)[:, None]
        h_new = tf.where(m, h_new, h)
        c_new = tf.where(m, c_new, c)
        out = tf.where(m, h_new, tf.zeros_like(h_new) if zero_output_for_mask else prev_out)
        return t + 1, h_new, c_new, out, out_ta.write(t, out)

    _, h, c, _, out_ta = _while(
        steps, masked_body, (tf.constant(0), h0, c0, tf.zeros_like(h0), out_ta)
    )
    return out_ta.stack(), h, c


def _unrolled(
    xw_tm, h, c, recurrent_kernel, activation, recurrent_activation,
    mask_tm, recurrent_dropout_mask, zero_output_for_mask,
):
    masks = tf.unstack(mask_tm) if mask_tm is not None else None
    out = tf.zeros_like(h)
    outputs = []
    for t, xw in enumerate(tf.unstack(xw_tm)):
        h_in = h if recurrent_dropout_mask is None else h * recurrent_dropout_mask
        h_new, c_new = lstm_step(
            xw + tf.matmul(h_in, recurrent_kernel), c, activation, recurrent_activation
        )
        if masks is None:
            h, c, out = h_new, c_new, h_new
        else:
            m = masks[t][:, None]
            h, c = tf.where(m, h_new, h), tf.where(m, c_new, c)
            out = tf.where(m, h_new, tf.zeros_like(h_new) if zero_output_for_mask else out)
        outputs.append(out)
    return tf.stack(outputs), h, c

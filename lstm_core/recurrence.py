"""The LSTM time loops over pre-projected inputs (time-major), forward and backward.

``x·W + b`` for all steps is computed before these loops (one matmul); only ``h·U`` runs per
step. Two loops:
  * :func:`recurrence` — plain ``tf.while_loop``, any activations, differentiated by autodiff.
  * :func:`recurrence_with_bptt` — tanh/sigmoid only, with a hand-written backward pass
    (backpropagation through time): the backward loop does one ``dz·Uᵀ`` matmul per step, and
    the weight gradients ``dU = Σ h_{t-1}ᵀ dz_t`` are one einsum over all steps afterwards.
    Autodiff of a while loop stacks every intermediate of every op; this saves only the four
    gates and the cell state.
Both follow ``keras.backend.rnn`` mask semantics: a masked step carries (h, c) over and emits
the previous output (or zeros with ``zero_output_for_mask``).
"""

from __future__ import annotations

import tensorflow as tf

from lstm_core.cell import lstm_step


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
):
    """Forward loop. ``xw_tm`` [T, B, 4H]; ``mask_tm`` [T, B] bool. Returns (outputs_tm, h, c)."""
    steps = tf.shape(xw_tm)[0]
    xw_ta = tf.TensorArray(xw_tm.dtype, size=steps).unstack(xw_tm)
    out_ta = tf.TensorArray(xw_tm.dtype, size=steps)
    mask_ta = None
    if mask_tm is not None:
        mask_ta = tf.TensorArray(tf.bool, size=steps).unstack(mask_tm)

    def body(t, h, c, prev_out, out_ta):
        h_in = h if recurrent_dropout_mask is None else h * recurrent_dropout_mask
        z = xw_ta.read(t) + tf.matmul(h_in, recurrent_kernel)
        h_new, c_new = lstm_step(z, c, activation, recurrent_activation)
        out = h_new
        if mask_ta is not None:
            m = mask_ta.read(t)[:, None]
            h_new = tf.where(m, h_new, h)
            c_new = tf.where(m, c_new, c)
            out = tf.where(m, out, tf.zeros_like(out) if zero_output_for_mask else prev_out)
        return t + 1, h_new, c_new, out, out_ta.write(t, out)

    _, h, c, _, out_ta = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), h0, c0, tf.zeros_like(h0), out_ta),
    )
    return out_ta.stack(), h, c


def recurrence_with_bptt(
    xw_tm,
    h0,
    c0,
    recurrent_kernel,
    mask_tm=None,
    recurrent_dropout_mask=None,
    zero_output_for_mask=False,
):
    """Same result as :func:`recurrence` (tanh/sigmoid) with a hand-written gradient.

    Gradients flow to ``xw_tm``, ``h0``, ``c0`` and ``recurrent_kernel``; the mask and the
    recurrent-dropout mask are constants.
    """
    masked = mask_tm is not None
    mask_f = tf.cast(mask_tm, xw_tm.dtype)[:, :, None] if masked else None
    rdm = recurrent_dropout_mask

    @tf.custom_gradient
    def run(xw_tm, h0, c0, u):
        steps = tf.shape(xw_tm)[0]
        dtype = xw_tm.dtype
        xw_ta = tf.TensorArray(dtype, size=steps).unstack(xw_tm)
        m_ta = tf.TensorArray(dtype, size=steps).unstack(mask_f) if masked else None
        ta = lambda: tf.TensorArray(dtype, size=steps)

        def body(t, h, c, prev_out, out_ta, gate_ta, cc_ta, hs_ta, cs_ta):
            h_in = h if rdm is None else h * rdm
            z = xw_ta.read(t) + tf.matmul(h_in, u)
            z_i, z_f, z_c, z_o = tf.split(z, 4, axis=-1)
            i, f, g, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.tanh(z_c), tf.sigmoid(z_o)
            c_new = f * c + i * g
            h_new = o * tf.tanh(c_new)
            gate_ta = gate_ta.write(t, tf.concat([i, f, g, o], axis=-1))
            cc_ta = cc_ta.write(t, c_new)
            out = h_new
            if masked:
                m = m_ta.read(t)
                out = m * h_new + (1.0 - m) * (0.0 if zero_output_for_mask else prev_out)
                h_new = m * h_new + (1.0 - m) * h
                c_new = m * c_new + (1.0 - m) * c
                hs_ta, cs_ta = hs_ta.write(t, h_new), cs_ta.write(t, c_new)
            return t + 1, h_new, c_new, out, out_ta.write(t, out), gate_ta, cc_ta, hs_ta, cs_ta

        _, h, c, _, out_ta, gate_ta, cc_ta, hs_ta, cs_ta = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), h0, c0, tf.zeros_like(h0), ta(), ta(), ta(), ta(), ta()),
        )
        outputs_tm = out_ta.stack()
        gates_tm = gate_ta.stack()
        c_cand_tm = cc_ta.stack()
        h_state_tm = hs_ta.stack() if masked else outputs_tm
        c_state_tm = cs_ta.stack() if masked else c_cand_tm

        def grad(d_outputs, d_h, d_c):
            d_outputs = tf.zeros_like(outputs_tm) if d_outputs is None else d_outputs
            d_h = tf.zeros_like(h0) if d_h is None else d_h
            d_c = tf.zeros_like(c0) if d_c is None else d_c
            c_prev_tm = tf.concat([c0[None], c_state_tm[:-1]], axis=0)
            h_prev_tm = tf.concat([h0[None], h_state_tm[:-1]], axis=0)
            g_ta = tf.TensorArray(dtype, size=steps).unstack(gates_tm)
            cc_in = tf.TensorArray(dtype, size=steps).unstack(c_cand_tm)
            cp_ta = tf.TensorArray(dtype, size=steps).unstack(c_prev_tm)
            do_ta = tf.TensorArray(dtype, size=steps).unstack(d_outputs)
            mb_ta = tf.TensorArray(dtype, size=steps).unstack(mask_f) if masked else None
            u_t = tf.transpose(u)

            def back(t, dh, dc, d_prev_out, dz_ta):
                i, f, g, o = tf.split(g_ta.read(t), 4, axis=-1)
                tc = tf.tanh(cc_in.read(t))
                g_out = do_ta.read(t) + d_prev_out
                if masked:
                    m = mb_ta.read(t)
                    dh_c, dc_c = m * (dh + g_out), m * dc
                else:
                    dh_c, dc_c = dh + g_out, dc
                dct = dc_c + dh_c * o * (1.0 - tc * tc)
                dz = tf.concat(
                    [
                        dct * g * i * (1.0 - i),
                        dct * cp_ta.read(t) * f * (1.0 - f),
                        dct * i * (1.0 - g * g),
                        dh_c * tc * o * (1.0 - o),
                    ],
                    axis=-1,
                )
                dh_prev = tf.matmul(dz, u_t)
                if rdm is not None:
                    dh_prev = dh_prev * rdm
                dc_prev = dct * f
                if masked:
                    dh_prev += (1.0 - m) * dh
                    dc_prev += (1.0 - m) * dc
                    d_prev_out = tf.zeros_like(g_out) if zero_output_for_mask else (1.0 - m) * g_out
                return t - 1, dh_prev, dc_prev, d_prev_out, dz_ta.write(t, dz)

            _, dh0, dc0, _, dz_ta = tf.while_loop(
                lambda t, *_: t >= 0,
                back,
                (steps - 1, d_h, d_c, tf.zeros_like(h0), tf.TensorArray(dtype, size=steps)),
            )
            dz_tm = dz_ta.stack()
            h_in_tm = h_prev_tm if rdm is None else h_prev_tm * rdm
            d_u = tf.einsum("tbh,tbj->hj", h_in_tm, dz_tm)
            return dz_tm, dh0, dc0, d_u

        return (outputs_tm, h, c), grad

    return run(xw_tm, h0, c0, recurrent_kernel)

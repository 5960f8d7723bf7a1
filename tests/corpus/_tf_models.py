"""TensorFlow/Keras sources of the corpus models (imported by ``make_corpus.py`` only).

Keras 2 (``tf_keras``, selected by ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported): the
forum pipeline is Keras 2 era, and tf2onnx 1.17's ``from_keras`` needs it. One tiny NHWC network is
trained once; every exported function reuses its layers and differs only in how the exit is written.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")

import warnings
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

keras = tf.keras
if not keras.layers.Layer.__module__.startswith("tf_keras."):
    raise RuntimeError(
        f"tf.keras is {keras.layers.Layer.__module__}, not Keras 2: install tf-keras and set "
        "TF_USE_LEGACY_KERAS=1 before TensorFlow is imported"
    )

NUM_CLASSES = 10


@dataclass
class Parts:
    trunk: keras.Model
    exit_head: keras.Model
    deep: keras.Model
    module: tf.Module  # tracks the variables (for TFLite conversion and SavedModel)
    deep_weights: list[np.ndarray]  # the trained deep-branch weights (read eagerly)


def train(x_nhwc: np.ndarray, y: np.ndarray, seed: int, epochs: int, width: int = 8) -> Parts:
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    L = keras.layers

    def conv(c: int, name: str):
        return L.Conv2D(c, 3, strides=2, padding="same", activation="relu", name=name)

    trunk = keras.Sequential([conv(width, "trunk_conv")], name="trunk")
    exit_head = keras.Sequential(
        [conv(width, "exit_conv"), L.GlobalAveragePooling2D(), L.Dense(NUM_CLASSES)],
        name="exit_head",
    )
    deep = keras.Sequential(
        [
            conv(2 * width, "deep_conv1"),
            conv(2 * width, "deep_conv2"),
            L.GlobalAveragePooling2D(),
            L.Dense(NUM_CLASSES),
        ],
        name="deep",
    )
    inp = keras.Input((32, 32, 3), name="input_1")
    h = trunk(inp)
    model = keras.Model(inp, [exit_head(h), deep(h)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=[loss, loss])
    model.fit(x_nhwc, [y, y], batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    module = tf.Module()
    module.trunk, module.exit_head, module.deep = trunk, exit_head, deep
    return Parts(trunk, exit_head, deep, module, [w.numpy() for w in deep.weights])


def components(parts: Parts, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = parts.trunk(x_nhwc, training=False)
    logits = parts.exit_head(h, training=False)
    return (
        logits.numpy(),
        tf.nn.softmax(logits).numpy(),
        tf.nn.softmax(parts.deep(h, training=False)).numpy(),
    )


def _flagged(q, value: float, layout: str, flag_shape: str):
    if layout == "none":
        return tf.identity(q)
    column = tf.fill(tf.stack([tf.shape(q)[0], 1]), value)
    if layout == "concat":
        return tf.concat([q, column], axis=1)
    if layout == "concat_mismatch":  # negative control: 1 flag column on exit, 2 on the deep branch
        return tf.concat([q, tf.fill(tf.stack([tf.shape(q)[0], 1 + int(value)]), value)], axis=1)
    if flag_shape == "[N,1]":
        return q, column
    if flag_shape == "[1]":
        return q, tf.constant([value])
    if flag_shape == "scalar":
        return q, tf.constant(value)
    raise ValueError(f"unknown flag shape {flag_shape!r}")


def _score(criterion: str, logits, p):
    if criterion == "max_softmax":
        return tf.reduce_max(p)
    if criterion == "max_logit":
        return tf.reduce_max(logits)
    if criterion == "entropy":
        return -tf.reduce_sum(p * tf.math.log(p))
    raise ValueError(criterion)


def _compare(compare: str, score, t):
    return {
        "gt": lambda: score > t,
        "ge": lambda: score >= t,
        "le": lambda: score <= t,
        "lt": lambda: score < t,
        "lt_swapped": lambda: t < score,
        "not_le": lambda: tf.logical_not(score <= t),
        "const_true": lambda: tf.constant(True),
    }[compare]()


def deep_branch(parts: Parts, style: str):
    """The deep branch's logits as a function of the trunk features.

    ``keras``: the trained Keras layers (their variables are captured by the ``tf.cond`` branch).
    ``const``: the same weights as ``tf.constant`` created *inside* the branch, with ``tf.nn`` ops.
    tf2onnx 1.17 on TensorFlow 2.21 cannot convert a Conv2D whose kernel reaches a ``tf.cond``
    branch as a captured input (its shape is unknown there): the graph routes (from_function,
    from_keras, SavedModel) need ``const``; TFLite inlines the weights itself.
    """
    if style == "keras":
        return lambda h: parts.deep(h, training=False)
    if style != "const":
        raise ValueError(style)
    k1, b1, k2, b2, wd, bd = parts.deep_weights

    def deep(h):
        z = tf.nn.relu(tf.nn.conv2d(h, tf.constant(k1), 2, "SAME") + tf.constant(b1))
        z = tf.nn.relu(tf.nn.conv2d(z, tf.constant(k2), 2, "SAME") + tf.constant(b2))
        return tf.matmul(tf.reduce_mean(z, axis=[1, 2]), tf.constant(wd)) + tf.constant(bd)

    return deep


def cond_exit(parts: Parts, h, t, *, criterion, compare, layout, flag_shape, deep_style):
    """The early exit as a Keras user writes it: ``tf.cond(score <op> t, exit, deep)``."""
    logits = parts.exit_head(h, training=False)
    p = tf.nn.softmax(logits)
    pred = _compare(compare, _score(criterion, logits, p), t)
    deep = deep_branch(parts, deep_style)
    return tf.cond(
        pred,
        lambda: _flagged(p, 0.0, layout, flag_shape),
        lambda: _flagged(tf.nn.softmax(deep(h)), 1.0, layout, flag_shape),
    )


def exit_body(parts: Parts, x, t, **kw):
    return cond_exit(parts, parts.trunk(x, training=False), t, **kw)


def image_spec(batch: int | None) -> tf.TensorSpec:
    return tf.TensorSpec([batch, 32, 32, 3], tf.float32, name="input_1")


def make_function(
    parts: Parts,
    *,
    criterion: str,
    compare: str,
    layout: str,
    flag_shape: str,
    baked: float | None,
    batch: int | None,
    deep_style: str,
    threshold_access: str = "squeeze",
) -> tf.types.experimental.GenericFunction:
    """A ``tf.function`` with the threshold baked (``baked``) or a runtime input ``threshold`` [1]."""
    kw = dict(
        criterion=criterion,
        compare=compare,
        layout=layout,
        flag_shape=flag_shape,
        deep_style=deep_style,
    )
    if baked is not None:
        const = float(baked)

        @tf.function(input_signature=[image_spec(batch)])
        def serve(input_1):
            return exit_body(parts, input_1, tf.constant(const, tf.float32), **kw)

        return serve

    def access(threshold):
        if threshold_access == "squeeze":
            return tf.squeeze(threshold)
        if threshold_access == "index":
            return threshold[0]
        raise ValueError(threshold_access)

    @tf.function(
        input_signature=[image_spec(batch), tf.TensorSpec([1], tf.float32, name="threshold")]
    )
    def serve_t(input_1, threshold):
        return exit_body(parts, input_1, access(threshold), **kw)

    return serve_t


class CondExitLayer(keras.layers.Layer):
    """A Keras layer holding the exit (for ``tf2onnx.convert.from_keras``)."""

    def __init__(self, parts: Parts, baked: float, **kw) -> None:
        super().__init__(name="early_exit")
        self.parts, self.baked, self.kw = parts, float(baked), kw

    def call(self, h):
        return cond_exit(self.parts, h, tf.constant(self.baked, tf.float32), **self.kw)


def make_keras_model(parts: Parts, baked: float, **kw) -> keras.Model:
    inp = keras.Input((32, 32, 3), name="input_1")
    out = CondExitLayer(parts, baked, **kw)(parts.trunk(inp))
    return keras.Model(inp, out, name="early_exit_model")


def to_tflite(parts: Parts, fn) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], parts.module
    )
    return conv.convert()


def run_tflite(tflite: bytes, x_nhwc: np.ndarray) -> list[np.ndarray]:
    """Run the TFLite model itself (the intermediate the forum pipeline ships)."""
    with warnings.catch_warnings():  # tf.lite.Interpreter is deprecated in favour of ai_edge_litert
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(model_content=tflite)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(x_nhwc.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x_nhwc)
    interp.invoke()
    return [interp.get_tensor(o["index"]) for o in interp.get_output_details()]


def as_numpy(out) -> list[np.ndarray]:
    if isinstance(out, dict):
        out = list(out.values())
    if not isinstance(out, (list, tuple)):
        out = [out]
    return [np.asarray(o) for o in out]


def save_model(parts: Parts, fn, path: str) -> None:
    parts.module.serve = fn
    tf.saved_model.save(
        parts.module, path, signatures={"serving_default": fn.get_concrete_function()}
    )

"""Layers (Dense, Dropout, activation layers), initializers and regularizers against NumPy
float64 references on odd shapes."""

import math

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import initializers, layers, regularizers
from references import reference_activation

# float32 kernels against float64 references: a few ulps per operation, and sums of up to a
# few dozen terms.
RTOL, ATOL = 2e-5, 2e-6


def reference_activation_grad(name, grad_output, z, slope=0.01):
    """Vector-Jacobian product of the activation at z, by central differences in float64 for
    the elementwise ones (exact enough at h=1e-6) and in closed form for softmax."""
    if name is None:
        return grad_output
    if name == "softmax":
        s = reference_activation("softmax", z)
        return s * (grad_output - np.sum(grad_output * s, axis=1, keepdims=True))
    h = 1e-6
    return grad_output * (reference_activation(name, z + h, slope) - reference_activation(name, z - h, slope)) / (2 * h)


def build_layer(layer, input_dim, rng):
    """Builds ``layer`` on its own buffers (as a model would) with random parameters."""
    shapes = layer.parameter_shapes(input_dim)
    parameters = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes}
    gradients = {name: np.full(shape, np.nan, dtype=np.float32) for name, shape in shapes}
    layer.build(input_dim, parameters, gradients)
    return parameters, gradients


ACTIVATION_NAMES = [None, "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"]


class TestDense:
    @pytest.mark.parametrize("activation", ACTIVATION_NAMES)
    @pytest.mark.parametrize("rows, inputs, units", [(1, 3, 1), (17, 5, 7), (3, 33, 2)])
    def test_forward_and_backward_match_numpy(self, rng, simd_path, activation, rows, inputs, units):
        layer = layers.Dense(units, activation=activation)
        parameters, gradients = build_layer(layer, inputs, rng)
        x = rng.standard_normal((rows, inputs)).astype(np.float32)
        kernel, bias = parameters["kernel"].astype(np.float64), parameters["bias"].astype(np.float64)
        z = x.astype(np.float64) @ kernel + bias
        expected = reference_activation(activation, z)

        inference = layer.forward(x, layer.allocate(rows, training=False), False, 0)
        np.testing.assert_allclose(inference, expected, rtol=RTOL, atol=ATOL)
        buffers = layer.allocate(rows, training=True)
        output = layer.forward(x, buffers, True, 0)
        np.testing.assert_allclose(output, expected, rtol=RTOL, atol=ATOL)

        grad_output = rng.standard_normal((rows, units)).astype(np.float32)
        grad_pre = reference_activation_grad(activation, grad_output.astype(np.float64), z)
        grad_input = np.empty((rows, inputs), dtype=np.float32)
        layer.backward(grad_output.copy(), x, buffers, grad_input)
        # Finite-difference derivatives (elementwise) carry ~1e-9 absolute error.
        np.testing.assert_allclose(gradients["kernel"], x.T.astype(np.float64) @ grad_pre, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gradients["bias"], grad_pre.sum(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(grad_input, grad_pre @ kernel.T, rtol=1e-4, atol=1e-5)

    def test_without_activation_the_output_is_the_pre_activation(self, rng):
        layer = layers.Dense(4, activation="sigmoid")
        parameters, _ = build_layer(layer, 3, rng)
        x = rng.standard_normal((5, 3)).astype(np.float32)
        for training in (False, True):
            logits = layer.forward(x, layer.allocate(5, training), training, 0, apply_activation=False)
            np.testing.assert_allclose(logits, x @ parameters["kernel"] + parameters["bias"], rtol=RTOL, atol=ATOL)

    def test_without_bias(self, rng):
        layer = layers.Dense(3, use_bias=False)
        assert layer.parameter_shapes(4) == [("kernel", (4, 3))]
        parameters, gradients = build_layer(layer, 4, rng)
        x = rng.standard_normal((6, 4)).astype(np.float32)
        buffers = layer.allocate(6, True)
        np.testing.assert_allclose(layer.forward(x, buffers, True, 0), x @ parameters["kernel"], rtol=RTOL, atol=ATOL)
        grad_output = rng.standard_normal((6, 3)).astype(np.float32)
        layer.backward(grad_output, x, buffers, None)
        np.testing.assert_allclose(gradients["kernel"], x.T @ grad_output, rtol=RTOL, atol=ATOL)
        assert layer.bias is None and layer.bias_grad is None

    def test_frozen_layer_computes_only_the_input_gradient(self, rng):
        layer = layers.Dense(3, trainable=False)
        parameters, gradients = build_layer(layer, 2, rng)
        x = rng.standard_normal((4, 2)).astype(np.float32)
        buffers = layer.allocate(4, True)
        layer.forward(x, buffers, True, 0)
        grad_output = rng.standard_normal((4, 3)).astype(np.float32)
        grad_input = np.empty((4, 2), dtype=np.float32)
        layer.backward(grad_output, x, buffers, grad_input)
        assert np.isnan(gradients["kernel"]).all() and np.isnan(gradients["bias"]).all()
        np.testing.assert_allclose(grad_input, grad_output @ parameters["kernel"].T, rtol=RTOL, atol=ATOL)

    def test_leaky_relu_uses_slope_0_01(self, rng):
        layer = layers.Dense(2, activation="leaky_relu", kernel_initializer="ones", bias_initializer="zeros")
        build_layer(layer, 1, rng)
        layer.initialize(np.random.default_rng(0))
        out = layer.forward(np.array([[-3.0]], dtype=np.float32), layer.allocate(1, False), False, 0)
        np.testing.assert_allclose(out, [[-0.03, -0.03]], rtol=1e-6)

    def test_initializers_and_regularizer_by_name(self):
        layer = layers.Dense(4, kernel_initializer="he_normal", bias_initializer="ones", kernel_regularizer="l2")
        assert isinstance(layer.kernel_initializer, initializers.HeNormal)
        assert isinstance(layer.bias_initializer, initializers.Ones)
        assert isinstance(layer.kernel_regularizer, regularizers.L2) and layer.kernel_regularizer.l2 == 0.01

    def test_linear_is_no_activation(self):
        assert layers.Dense(3, activation="linear").activation is None

    @pytest.mark.parametrize("kwargs, error, message", [
        ({"units": 0}, ValueError, "units"),
        ({"units": 2.5}, TypeError, "units"),
        ({"units": 3, "activation": "swish"}, ValueError, "activation: expected None or one of"),
        ({"units": 3, "kernel_initializer": "nope"}, ValueError, "initializer"),
        ({"units": 3, "kernel_regularizer": "l3"}, ValueError, "kernel_regularizer"),
        ({"units": 3, "input_dim": 0}, ValueError, "input_dim"),
        ({"units": 3, "trainable": "yes"}, TypeError, "trainable"),
        ({"units": 3, "name": ""}, ValueError, "name"),
    ])
    def test_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error, match=message):
            layers.Dense(**kwargs)


class TestActivationLayers:
    @pytest.mark.parametrize("layer, name", [
        (layers.ReLU(), "relu"), (layers.LeakyReLU(0.2), "leaky_relu"), (layers.Sigmoid(), "sigmoid"),
        (layers.Tanh(), "tanh"), (layers.GELU(), "gelu"), (layers.Softmax(), "softmax"),
        (layers.Activation("tanh"), "tanh"), (layers.Activation("linear"), None),
    ])
    def test_forward_and_backward_match_numpy(self, rng, layer, name):
        rows, width = 7, 5
        build_layer(layer, width, rng)
        x = (rng.standard_normal((rows, width)) * 2).astype(np.float32)
        slope = 0.2 if name == "leaky_relu" else 0.01
        buffers = layer.allocate(rows, True)
        output = layer.forward(x, buffers, True, 0)
        np.testing.assert_allclose(output, reference_activation(name, x.astype(np.float64), slope), rtol=RTOL, atol=ATOL)
        grad_output = rng.standard_normal((rows, width)).astype(np.float32)
        grad_input = np.empty_like(x)
        layer.backward(grad_output, x, buffers, grad_input)
        expected = reference_activation_grad(name, grad_output.astype(np.float64), x.astype(np.float64), slope)
        np.testing.assert_allclose(grad_input, expected, rtol=1e-4, atol=1e-5)
        assert layer.count_params() == 0 and layer.output_dim == width

    def test_unknown_activation(self):
        with pytest.raises(ValueError, match="activation"):
            layers.Activation("elu")


class TestDropout:
    def test_identity_at_inference(self, rng):
        layer = layers.Dropout(0.5)
        build_layer(layer, 4, rng)
        x = rng.standard_normal((3, 4)).astype(np.float32)
        assert layer.forward(x, layer.allocate(3, False), False, 0) is x

    def test_training_masks_scale_and_backward(self, rng):
        rate = 0.3
        layer = layers.Dropout(rate, seed=11)
        build_layer(layer, 257, rng)
        x = rng.standard_normal((64, 257)).astype(np.float32)
        buffers = layer.allocate(64, True)
        output = layer.forward(x, buffers, True, 5).copy()
        kept = output != 0
        # 16448 Bernoulli draws: the dropped share is within 5 standard deviations of the rate.
        assert abs((1 - kept.mean()) - rate) < 5 * math.sqrt(rate * (1 - rate) / kept.size)
        np.testing.assert_allclose(output[kept], x[kept] / (1 - rate), rtol=1e-6)
        grad_output = rng.standard_normal(x.shape).astype(np.float32)
        grad_input = np.empty_like(x)
        layer.backward(grad_output, x, buffers, grad_input)
        np.testing.assert_allclose(grad_input, np.where(kept, grad_output / (1 - rate), 0.0), rtol=1e-6)

    def test_mask_depends_on_seed_and_step_only(self, rng):
        layer = layers.Dropout(0.5, seed=3)
        build_layer(layer, 50, rng)
        x = np.ones((8, 50), dtype=np.float32)
        buffers = layer.allocate(8, True)
        first = layer.forward(x, buffers, True, 1).copy()
        again = layer.forward(x, buffers, True, 1).copy()
        other_step = layer.forward(x, buffers, True, 2).copy()
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other_step)

    def test_model_seed_is_used_without_a_layer_seed(self, rng):
        layer = layers.Dropout(0.5)
        build_layer(layer, 50, rng)
        x = np.ones((8, 50), dtype=np.float32)
        buffers = layer.allocate(8, True)
        layer.run_seed = 1
        first = layer.forward(x, buffers, True, 0).copy()
        layer.run_seed = 2
        assert not np.array_equal(first, layer.forward(x, buffers, True, 0))

    def test_rate_zero_is_the_identity(self, rng):
        layer = layers.Dropout(0.0)
        build_layer(layer, 3, rng)
        x = rng.standard_normal((2, 3)).astype(np.float32)
        buffers = layer.allocate(2, True)
        assert layer.forward(x, buffers, True, 0) is x
        grad_input = np.empty_like(x)
        layer.backward(x, x, buffers, grad_input)
        np.testing.assert_array_equal(grad_input, x)

    @pytest.mark.parametrize("rate", [1.0, -0.1, float("nan")])
    def test_bad_rate(self, rate):
        with pytest.raises(ValueError, match="rate"):
            layers.Dropout(rate)


class TestInitializers:
    SHAPE = (300, 200)

    def draw(self, initializer, seed=0):
        return initializers.get(initializer)(self.SHAPE, np.random.default_rng(seed))

    @pytest.mark.parametrize("name, limit", [
        ("glorot_uniform", math.sqrt(6 / 500)), ("he_uniform", math.sqrt(6 / 300)), ("lecun_uniform", math.sqrt(3 / 300)),
    ])
    def test_uniform_limits_and_spread(self, name, limit):
        values = self.draw(name)
        assert values.dtype == np.float32 and values.shape == self.SHAPE
        assert np.abs(values).max() <= limit
        # 60000 draws: the standard deviation is within 2% of limit / sqrt(3).
        assert abs(values.std() / (limit / math.sqrt(3)) - 1) < 0.02

    @pytest.mark.parametrize("name, stddev", [
        ("glorot_normal", math.sqrt(2 / 500)), ("he_normal", math.sqrt(2 / 300)), ("lecun_normal", math.sqrt(1 / 300)),
    ])
    def test_truncated_normals_keep_the_requested_deviation(self, name, stddev):
        values = self.draw(name).astype(np.float64)
        scale = stddev / 0.87962566103423978
        assert np.abs(values).max() <= 2 * scale * (1 + 1e-6)
        assert abs(values.std() / stddev - 1) < 0.02
        assert abs(values.mean()) < 4 * stddev / math.sqrt(values.size)

    def test_random_normal_and_uniform_arguments(self):
        values = self.draw(initializers.random_normal(mean=1.0, stddev=0.1)).astype(np.float64)
        assert abs(values.mean() - 1.0) < 0.002 and abs(values.std() - 0.1) < 0.002
        values = self.draw(initializers.RandomUniform(-2.0, -1.0))
        assert values.min() >= -2.0 and values.max() <= -1.0

    def test_constants(self):
        np.testing.assert_array_equal(self.draw("zeros"), 0.0)
        np.testing.assert_array_equal(self.draw("ones"), 1.0)
        np.testing.assert_array_equal(self.draw(initializers.Constant(0.25)), 0.25)

    def test_same_seed_same_values(self):
        np.testing.assert_array_equal(self.draw("he_normal", 5), self.draw("he_normal", 5))
        assert not np.array_equal(self.draw("he_normal", 5), self.draw("he_normal", 6))

    def test_errors(self):
        with pytest.raises(ValueError, match="initializer: expected an Initializer or one of"):
            initializers.get("xavier")
        with pytest.raises(ValueError, match="maxval"):
            initializers.RandomUniform(1.0, 0.0)
        with pytest.raises(ValueError, match="stddev"):
            initializers.RandomNormal(stddev=-1.0)
        with pytest.raises(ValueError, match="mode"):
            initializers.VarianceScaling(mode="fan_max")


class TestRegularizers:
    @pytest.mark.parametrize("regularizer, l1, l2", [
        (regularizers.L1(0.03), 0.03, 0.0), (regularizers.L2(0.02), 0.0, 0.02),
        (regularizers.L1L2(l1=0.01, l2=0.05), 0.01, 0.05), ("l1_l2", 0.01, 0.01),
    ])
    def test_penalty_and_gradient_match_numpy(self, rng, regularizer, l1, l2):
        regularizer = regularizers.get(regularizer)
        weights = rng.standard_normal((17, 3)).astype(np.float32)
        scratch = np.empty_like(weights)
        w = weights.astype(np.float64)
        expected = l1 * np.abs(w).sum() + l2 * np.square(w).sum()
        assert regularizer.penalty(weights, scratch) == pytest.approx(expected, rel=1e-5)
        grad = rng.standard_normal((17, 3)).astype(np.float32)
        expected_grad = grad + l1 * np.sign(w) + 2 * l2 * w
        regularizer.add_gradient(weights, grad, scratch)
        np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=ATOL)

    def test_defaults_and_errors(self):
        assert regularizers.get(None) is None
        assert regularizers.get("l1").l1 == 0.01
        with pytest.raises(ValueError, match="l2"):
            regularizers.L2(-1.0)
        with pytest.raises(TypeError, match="kernel_regularizer"):
            regularizers.get(0.1)
        with pytest.raises(ValueError, match="kernel_regularizer"):
            regularizers.get("l3")


def test_layer_weights_are_views_of_the_model_buffer():
    model = ft.Sequential([layers.Dense(3), layers.Dense(2, use_bias=False)], input_dim=4, seed=0)
    model.build()
    kernel = model.layers[0].kernel
    assert np.shares_memory(kernel, model.parameters)
    kernel[0, 0] = 42.0
    assert model.parameters[0] == 42.0
    assert np.shares_memory(model.layers[1].kernel_grad, model.gradients)
    assert [w.shape for w in model.layers[0].weights] == [(4, 3), (3,)]

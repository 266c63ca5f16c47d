"""Bad input across the public API: every row is a call that must fail with a clear error of the
stated type whose message names the argument (or says what would do). No numerics here: each
call fails before any heavy computation (the exact engine's resolution check runs before its
noise integral), so the whole table runs in seconds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdecomp import estimate as E
from jaxdecomp import exact
from jaxdecomp import neurons as N
from jaxdecomp.diffusion import gaussian_denoiser, gmm_denoiser, grid_denoiser
from jaxdecomp.diffusion import schedules as S

KEY = jax.random.PRNGKey(0)


def _grid():
    return exact.gaussian_grid(0.0, 1.0, m=31)


def _lin(sigma=0.5):
    return N.gaussian_population(N.linear([1.0]), sigma)


def _den(sigma=0.5):
    return gaussian_denoiser([0.0], [[1.0]], A=[[1.0]], sigma=sigma)


def _pairs(n=8):
    x = np.linspace(-1, 1, n)[:, None].astype(np.float32)
    return x, x + 0.1


def _levels(**kw):
    base = dict(log_snr=np.array([0.0, 1.0]), weights=np.array([0.5, 0.5]), lo=0.0, hi=1.0, tails=True)
    base.update(kw)
    return S.Levels(**base)


CASES = [
    # ------------------------------------------------------------------ exact: grids
    ("grid_unequal_spacing", lambda: exact.Grid(np.array([0.0, 1.0, 3.0]), np.ones(3) / 3), ValueError, "points"),
    ("grid_2d_not_tensor", lambda: exact.Grid(exact.gaussian_grid_2d(m=5).points[:-1], np.ones(24) / 24),
     ValueError, "points"),
    ("grid_repeated_points", lambda: exact.Grid(np.array([0.0, 0.0, 1.0]), np.ones(3) / 3), ValueError, "points"),
    ("grid_negative_weights", lambda: exact.Grid(np.linspace(0, 1, 3), np.array([-0.5, 1.0, 0.5])),
     ValueError, "weights"),
    ("gaussian_grid_negative_var", lambda: exact.gaussian_grid(0.0, -1.0), ValueError, "var"),
    ("gaussian_grid_nan_mean", lambda: exact.gaussian_grid(np.nan, 1.0), ValueError, "mean"),
    ("gaussian_grid_m_too_small", lambda: exact.gaussian_grid(0.0, 1.0, m=2), ValueError, "m"),
    ("gaussian_grid_m_float", lambda: exact.gaussian_grid(0.0, 1.0, m=10.5), TypeError, "m"),
    ("mixture_grid_variances_shape", lambda: exact.mixture_grid([0.0, 1.0], [0.1, 0.2, 0.3]), ValueError,
     "variances"),
    # ------------------------------------------------------------------ exact: engine
    ("exact_high_snr_coarse_grid",
     lambda: exact.ilocal(exact.gaussian_grid(0.0, 1e4, m=201), N.gaussian_population(N.linear([1.0]), 1.0)),
     exact.GridResolutionError, "m >= "),
    ("exact_1d_tuning_on_2d_grid", lambda: exact.ilocal(exact.gaussian_grid_2d(m=9), _lin()), ValueError,
     "population"),
    ("exact_1d_bumps_on_2d_grid",
     lambda: exact.mutual_information(exact.gaussian_grid_2d(m=9), N.poisson_population(N.gaussian_bumps([0.0, 1.0]))),
     ValueError, "population"),
    ("exact_tail_half", lambda: exact.mutual_information(_grid(), N.poisson_population(N.gaussian_bumps([0.0])),
                                                         tail=0.5), ValueError, "tail"),
    ("exact_points_per_sigma_zero", lambda: exact.mutual_information(_grid(), _lin(), points_per_sigma=0),
     ValueError, "points_per_sigma"),
    ("exact_max_cells_zero", lambda: exact.mutual_information(_grid(), _lin(), max_cells=0), ValueError, "max_cells"),
    ("exact_n_levels_one", lambda: exact.ilocal(_grid(), _lin(), n_levels=1), ValueError, "n_levels"),
    ("exact_g_min_negative", lambda: exact.ilocal(_grid(), _lin(), g_min=-1.0), ValueError, "g_min"),
    ("exact_blur_points_small", lambda: exact.ilocal(_grid(), _lin(), blur_points=4), ValueError, "blur_points"),
    ("exact_check_not_bool", lambda: exact.ilocal(_grid(), _lin(), check="yes"), TypeError, "check"),
    ("exact_grid_not_grid", lambda: exact.ilocal(np.linspace(0, 1, 5), _lin()), TypeError, "grid"),
    ("exact_population_string", lambda: exact.mutual_information(_grid(), "population"), TypeError, "population"),
    ("exact_mc_int_key", lambda: exact.monte_carlo_measures(0, _grid(), _lin()), TypeError, "key"),
    # ------------------------------------------------------------------ neurons
    ("bumps_nan_center", lambda: N.gaussian_bumps([np.nan]), ValueError, "centers"),
    ("bumps_negative_width", lambda: N.gaussian_bumps([0.0], widths=-1.0), ValueError, "widths"),
    ("bumps_widths_wrong_length", lambda: N.gaussian_bumps([0.0, 1.0], widths=[1.0, 2.0, 3.0]), ValueError, "widths"),
    ("bumps_string_center", lambda: N.gaussian_bumps(["a"]), TypeError, "centers"),
    ("linear_nan_offset", lambda: N.linear([1.0], b=np.nan), ValueError, "b"),
    ("linear_inf_weight", lambda: N.linear([np.inf]), ValueError, "A"),
    ("sigmoids_nan_slope", lambda: N.sigmoids([0.0], slopes=np.nan), ValueError, "slopes"),
    ("von_mises_nan_kappa", lambda: N.von_mises([0.0], kappas=np.nan), ValueError, "kappas"),
    ("gaussian_population_nan_sigma", lambda: N.gaussian_population(N.linear([1.0]), np.nan), ValueError, "sigma"),
    ("gaussian_population_negative_sigma", lambda: N.gaussian_population(N.linear([1.0]), -1.0), ValueError,
     "sigma"),
    ("gaussian_population_sigma_length",
     lambda: N.gaussian_population(N.linear([1.0, 2.0]), [1.0, 2.0, 3.0]).sample(KEY, 0.3), ValueError, "sigma"),
    ("poisson_sample_nan_stimulus",
     lambda: N.poisson_population(N.gaussian_bumps([0.0], 1.0, 5.0)).sample(KEY, jnp.nan), ValueError, "x"),
    ("bumps_1d_model_2d_stimulus", lambda: N.gaussian_bumps([0.0, 1.0])(jnp.ones(2)), ValueError, "centers"),
    ("linear_1d_model_2d_stimulus", lambda: N.linear([1.0, 2.0])(jnp.ones(2)), ValueError, "A"),
    ("population_rate_not_callable", lambda: N.poisson_population("rates"), TypeError, "rate_fn"),
    ("log_prob_wrong_response_shape", lambda: _lin().log_prob(jnp.ones(3), 0.1), ValueError, "r"),
    # ------------------------------------------------------------------ diffusion: analytic denoisers
    ("gmm_sigma_wrong_length", lambda: gmm_denoiser([1.0], [[0.0]], 1.0, A=[[1.0], [2.0]], sigma=[1.0, 2.0, 3.0]),
     ValueError, "sigma"),
    ("gmm_sigma_without_A", lambda: gmm_denoiser([1.0], [[0.0]], 1.0, sigma=1.0), ValueError, "sigma"),
    ("gmm_means_weights_mismatch", lambda: gmm_denoiser([0.5, 0.5], [[0.0]], 1.0), ValueError, "means"),
    ("gmm_negative_variance", lambda: gmm_denoiser([1.0], [[0.0]], -1.0), ValueError, "variances"),
    ("gmm_response_wrong_shape", lambda: _den()(jnp.zeros(1), 0.0, jnp.ones(3)), ValueError, "r"),
    ("grid_denoiser_weights_shape", lambda: grid_denoiser(np.linspace(0, 1, 5), np.ones(4)), ValueError, "weights"),
    # ------------------------------------------------------------------ schedules
    ("levels_lo_above_hi", lambda: S.check_levels(_levels(lo=1.0, hi=0.0)), ValueError, "lo < hi"),
    ("levels_negative_weights", lambda: S.check_levels(_levels(weights=np.array([0.5, -0.5]))), ValueError,
     "non-negative"),
    ("levels_length_mismatch", lambda: S.check_levels(_levels(weights=np.ones(3))), ValueError, "levels"),
    ("levels_nodes_outside_range", lambda: S.check_levels(_levels(log_snr=np.array([0.0, 5.0]))), ValueError,
     "[lo, hi]"),
    ("network_levels_zero", lambda: S.network_levels(0), ValueError, "n_levels"),
    ("ddpm_bad_betas", lambda: S.ddpm_linear(beta_min=0.1, beta_max=0.01), ValueError, "beta_min"),
    # ------------------------------------------------------------------ estimate
    ("ilocal_int_key", lambda: E.ilocal(0, _den(), _lin(), jnp.zeros(1)), TypeError, "key"),
    ("ilocal_batch_of_keys", lambda: E.ilocal(jax.random.split(KEY, 3), _den(), _lin(), jnp.zeros(1)), TypeError,
     "key"),
    ("ilocal_population_not_the_denoisers", lambda: E.ilocal(KEY, _den(1.0), _lin(0.25), jnp.zeros(1)), ValueError,
     "population"),
    ("ilocal_population_neuron_count",
     lambda: E.ilocal(KEY, _den(), N.gaussian_population(N.linear([1.0, 1.0]), 0.5), jnp.zeros(1)), ValueError,
     "neurons"),
    ("ilocal_poisson_with_linear_gaussian_oracle",
     lambda: E.ilocal(KEY, _den(), N.poisson_population(N.gaussian_bumps([0.0])), jnp.zeros(1)), ValueError,
     "population"),
    ("ilocal_string_stimulus", lambda: E.ilocal(KEY, _den(), _lin(), "x"), TypeError, "x"),
    ("ilocal_nan_stimulus", lambda: E.ilocal(KEY, _den(), _lin(), jnp.array([jnp.nan])), ValueError, "x"),
    ("ilocal_one_sample", lambda: E.ilocal(KEY, _den(), _lin(), jnp.zeros(1), n_samples=1), ValueError, "n_samples"),
    ("ilocal_string_n_samples", lambda: E.ilocal(KEY, _den(), _lin(), jnp.zeros(1), n_samples="64"), TypeError,
     "n_samples"),
    ("ilocal_bad_sampler", lambda: E.ilocal(KEY, _den(), _lin(), jnp.zeros(1), response_sampler="mean"), ValueError,
     "response_sampler"),
    ("ilocal_levels_lo_above_hi", lambda: E.ilocal(KEY, _den(), _lin(), jnp.zeros(1), levels=_levels(lo=1.0, hi=0.0)),
     ValueError, "lo < hi"),
    ("ilocal_levels_negative_weights",
     lambda: E.ilocal(KEY, _den(), _lin(), jnp.zeros(1), levels=_levels(weights=np.array([0.5, -0.5]))),
     ValueError, "non-negative"),
    ("ilocal_levels_not_levels", lambda: E.ilocal(KEY, _den(), _lin(), jnp.zeros(1), levels=(0.0, 1.0)), TypeError,
     "levels"),
    ("surprise_int_key", lambda: E.specific_surprise(0, _den(), _lin(), jnp.zeros(1)), TypeError, "key"),
    ("mi_empty_arrays", lambda: E.mutual_information(KEY, _den(), np.zeros((0, 1)), np.zeros((0, 1))), ValueError,
     "x"),
    ("mi_string_responses", lambda: E.mutual_information(KEY, _den(), _pairs()[0], "r"), TypeError, "r"),
    ("mi_pair_count_mismatch", lambda: E.mutual_information(KEY, _den(), _pairs()[0], _pairs(6)[1]), ValueError,
     "x and r"),
    ("mi_nan_responses", lambda: E.mutual_information(KEY, _den(), _pairs()[0], np.full((8, 1), np.nan)),
     ValueError, "r"),
    ("mi_bad_form", lambda: E.mutual_information(KEY, _den(), *_pairs(), form="ortho"), ValueError, "form"),
    ("mi_int_key", lambda: E.mutual_information(7, _den(), *_pairs()), TypeError, "key"),
    ("mi_population_not_the_denoisers", lambda: E.mutual_information(KEY, _den(1.0), *_pairs(), population=_lin(0.1)),
     ValueError, "population"),
    ("mi_responses_vs_population_neurons",
     lambda: E.mutual_information(KEY, lambda z, a, r: z, _pairs()[0], np.zeros((8, 2)), stimulus_shape=(1,),
                                  population=_lin()), ValueError, "neurons"),
]


def test_table_is_large_enough():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,make,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, make, error, fragment):
    with pytest.raises(error) as info:
        make()
    assert fragment in str(info.value), f"{name}: message does not name {fragment!r}: {info.value}"

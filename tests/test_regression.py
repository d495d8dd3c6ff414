"""The regression UFM (neural regression collapse; Andriopoulos et al., NeurIPS 2024, arXiv
2409.04180) against its closed form, in gflow's convention L = (1/(2N)) ||H W^T + 1 b^T - Y||^2
+ wd_W/2 ||W||^2 + wd_H/2 ||H||^2: with Sigma = (1/N) Yc^T Yc = sum mu_i u_i u_i^T and
c = N wd_W wd_H, b = mean target, W W^T = sqrt(N wd_H/wd_W) sum (sqrt(mu_i) - sqrt(c))_+ u_i u_i^T,
rank #{mu_i > c}, F* = sum_{mu_i > c} (sqrt(c mu_i) - c/2) + sum_{mu_i <= c} mu_i/2, of which the
fit (1/(2N)) ||H W^T + 1 b^T - Y||^2 is (c rank + sum_{mu_i <= c} mu_i)/2. Results carry Y as the
variable ``targets`` (sample, target); their figures draw NRC1-NRC3 and the fit against the
closed form and W W^T beside the closed form's."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow
from gflow import cli, config, plots, results, simulation, theory
from gflow.config import ConfigError
from gflow.dynamics import gradient_flow
from gflow.models import registry
from gflow.models.regression import (
    regression_targets,
    saved_targets,
    ufm_regression,
    ufm_regression_with_targets,
)  # fmt: skip

# a small example (N = 6, m = 2): Sigma's eigenvalues 0.5824832587 and 3.3064056302
Y_EXAMPLE = np.array([[1, 0], [2, 1], [0, 3], [-1, 1], [3, -2], [1, 1]], float)
EXAMPLE = [
    # wd_W, wd_H, rank, F*, W W^T (c = 0.06: both eigenvalues pass)
    (0.1, 0.1, 2, 0.572350071788, [[2.2981832715, -1.2651220197], [-1.2651220197, 2.8253174464]]),
    # c = 1.2 lies between them: the small eigenvalue's mode dies
    (0.5, 0.4, 1, 1.683146937388, [[0.6303928516, -0.7752597909], [-0.7752597909, 0.9534177645]]),
]


def test_worked_example_closed_form():
    mu = np.linalg.eigvalsh(theory.target_covariance(Y_EXAMPLE))
    assert mu == pytest.approx([0.5824832587, 3.3064056302], abs=1e-10)
    for wd_W, wd_H, rank, loss, gram in EXAMPLE:
        opt = theory.regression_optimum(Y_EXAMPLE, wd_W, wd_H)
        assert opt.rank == rank and opt.threshold == pytest.approx(6 * wd_W * wd_H)
        assert opt.loss == pytest.approx(loss, abs=1e-12)
        assert np.abs(opt.W_gram - np.array(gram)).max() < 1e-10
        assert opt.bias == pytest.approx(Y_EXAMPLE.mean(axis=0))
        assert np.linalg.eigvalsh(opt.W_gram)[::-1] == pytest.approx(opt.W_gram_eigenvalues)
        assert opt.H_norm_sq == pytest.approx(opt.W_norm_sq * wd_W / wd_H)
        # F* = fit + decay, the fit (c rank + the dead eigenvalues)/2
        decay = wd_W / 2 * opt.W_norm_sq + wd_H / 2 * opt.H_norm_sq
        assert opt.train_mse + decay == pytest.approx(loss, abs=1e-12)
        dead = [v for v in mu if v <= opt.threshold]
        assert opt.train_mse == pytest.approx((opt.threshold * rank + sum(dead)) / 2, abs=1e-12)


@jax.jit
def _flow(model, key, times):
    """One init's flow (one compilation for every weight decay: they are traced leaves)."""
    params0 = model.init(key)
    observe = lambda p: {"loss": model.loss(p), **model.observables(p)}  # noqa: E731
    traj = gradient_flow(
        model.loss, params0, times, observe, rtol=1e-12, atol=1e-12, max_steps=100_000
    )
    return traj.observed, traj.final, traj.status


@pytest.mark.parametrize("seed", [0, 1])
def test_flow_reaches_the_optimum_on_both_sides_of_the_rank_threshold(seed):
    times = jnp.asarray([0.0, 50.0, 400.0])
    for wd_W, wd_H, rank, loss, gram in EXAMPLE:
        model = ufm_regression_with_targets(
            Y_EXAMPLE, 4, wd_W=wd_W, wd_H=wd_H, init_scale=0.5, dtype=jnp.float64
        )
        observed, final, status = _flow(model, jax.random.PRNGKey(seed), times)
        assert int(status) == 0
        assert float(observed["loss"][-1]) == pytest.approx(loss, abs=1e-11)
        fit = theory.regression_optimum(Y_EXAMPLE, wd_W, wd_H).train_mse
        assert float(observed["train_mse"][-1]) == pytest.approx(fit, abs=1e-9)
        W, H, b = (np.asarray(final[k]) for k in ("W", "H", "b"))
        assert np.abs(W @ W.T - np.array(gram)).max() < 1e-8
        assert np.abs(b - Y_EXAMPLE.mean(axis=0)).max() < 1e-8
        assert np.abs(H.mean(axis=0)).max() < 1e-8  # mean feature 0
        sv = np.linalg.svd(H, compute_uv=False)
        assert np.sum(sv > 1e-6 * sv[0]) == rank
        assert wd_W * np.sum(W**2) == pytest.approx(wd_H * np.sum(H**2), rel=1e-8)  # balanced
        for name in ("nrc1", "nrc2", "nrc3"):
            assert float(observed[name][0]) > 1e-2, name  # a random start is not collapsed
            assert float(observed[name][-1]) < 1e-8, name


def test_seeded_targets_have_exactly_the_requested_spectrum():
    for spectrum in ([4.0, 1.0], [3.0, 0.5, 0.5, 1e-3], [2.5]):
        for seed in (0, 5):
            Y = regression_targets(12, spectrum, seed)
            assert Y.shape == (12, len(spectrum))
            mu = np.linalg.eigvalsh(theory.target_covariance(Y))
            assert mu == pytest.approx(sorted(spectrum), rel=1e-12, abs=1e-13)
            assert np.abs(Y.mean(axis=0)).min() > 1e-3  # a nonzero mean
    assert np.array_equal(regression_targets(12, [4.0, 1.0], 3), regression_targets(12, [4, 1], 3))
    assert not np.allclose(regression_targets(12, [4.0, 1.0], 3), regression_targets(12, [4, 1], 4))
    model = ufm_regression(samples=12, targets=2, dim=3, target_spectrum=(4.0, 1.0),
                           target_seed=3, dtype=jnp.float64)  # fmt: skip
    assert np.array_equal(np.asarray(model.Y), regression_targets(12, [4.0, 1.0], 3))
    assert (model.num_classes, model.num_samples, model.dim) == (2, 12, 3)


def _pipeline(wd: float, **init) -> config.Config:
    """N = 20, m = 2, d = 3, Sigma's eigenvalues 4 and 1, wd_W = wd_H = ``wd``: one structure
    for every wd and init.from, so that every run of this module shares one compiled solve."""
    return config.from_dict({
        "model": {"name": "ufm-regression", "samples": 20, "targets": 2, "dim": 3,
                  "target_seed": 2, "wd_W": wd, "wd_H": wd},
        "dynamics": {"kind": "flow", "t1": 2000.0, "rtol": 1e-11, "atol": 1e-12,
                     "saves": 12, "max_steps": 100_000},
        "init": {"count": 2, "scale": 0.5, **init}, "run": {"precision": "float64"},
    })  # fmt: skip


def test_a_run_saves_the_targets_and_meets_the_closed_form():
    """Through the pipeline, N = 20, Sigma's eigenvalues 4 and 1: wd = 0.3 (c = 1.8) keeps one
    mode, wd = 0.1 (c = 0.2) both (one structure: the second run reuses the compiled solve)."""
    for wd, rank in ((0.3, 1), (0.1, 2)):
        cfg = _pipeline(wd)
        ds = simulation.simulate(cfg)
        assert list(ds.status.values) == ["ok", "ok"]
        Y = saved_targets(ds)
        assert np.array_equal(Y, regression_targets(20, [4.0, 1.0], 2))
        assert np.array_equal(Y, np.asarray(simulation.build_model(cfg).Y))
        opt = theory.regression_optimum(Y, wd, wd)
        assert ds.attrs["theory_rank"] == rank == opt.rank
        assert ds.attrs["theory_loss"] == pytest.approx(opt.loss, rel=1e-12)
        assert ds.attrs["theory_W_gram_eigenvalues"] == pytest.approx(opt.W_gram_eigenvalues)
        assert ds.attrs["theory_metrics"] == "nrc1 nrc2 nrc3"
        assert np.abs(ds.loss.values[:, -1] - opt.loss).max() < 1e-10
        assert ds.attrs["theory_train_mse"] == pytest.approx(opt.train_mse, rel=1e-12)
        assert np.abs(ds.train_mse.values[:, -1] - opt.train_mse).max() < 1e-9
        for W in ds.W.values:
            assert np.abs(W @ W.T - opt.W_gram).max() < 1e-7
        assert bool(results.collapsed(ds).all())
        assert (ds.sizes["class"], ds.sizes["sample"], ds.sizes["feature"]) == (2, 20, 3)


WD = 0.3  # c = 1.8: rank 1


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(ds, path): a run written by gflow.run and the results.nc read back."""
    out = tmp_path_factory.mktemp("regression")
    _, path = gflow.run(_pipeline(WD), out=out)
    return results.load(path), path


def test_the_targets_are_a_variable_with_named_dims_and_attributes(written):
    ds, _ = written
    Y = np.asarray(simulation.build_model(_pipeline(WD)).Y)
    targets = ds["targets"]
    assert targets.dims == ("sample", "target") and targets.dtype == np.float64
    assert np.array_equal(targets.values, Y)  # through netCDF, bit for bit
    assert np.array_equal(targets.values, regression_targets(20, [4.0, 1.0], 2))
    assert targets.attrs["units"] == "1"
    assert targets.attrs["long_name"].startswith("regression targets Y")
    assert "target_spectrum" in targets.attrs["description"]
    assert "Andriopoulos" in targets.attrs["references"]
    assert "2409.04180" in targets.attrs["references"]
    assert "target_values" not in ds.attrs  # the variable replaces the attribute
    assert np.array_equal(saved_targets(ds), Y)
    # its own dim: no other variable has "target", and nothing else was added
    assert set(ds.dims) == {"init", "time", "class", "feature", "sample", "target"}
    assert [n for n, v in ds.variables.items() if "target" in v.dims] == ["targets"]
    assert ds.initial_W.dims == ("init", "class", "feature")  # initial_* keep their own dims
    # a file written before the variable: the attribute, Y row-major
    old = ds.drop_vars("targets").assign_attrs(target_values=[float(v) for v in Y.ravel()])
    assert np.array_equal(saved_targets(old), Y)
    with pytest.raises(KeyError, match="targets"):
        saved_targets(ds.drop_vars("targets"))
    # blocks of inits joined keep the targets once
    joined = results.join([ds.isel(init=[1]), ds.isel(init=[0])])
    assert joined["targets"].dims == ("sample", "target")
    assert np.array_equal(joined["targets"].values, Y)


def test_saved_data_is_a_model_hook_checked_against_the_results_dims():
    ufm = simulation.build_model(config.from_dict({"model": {"name": "ufm-ce"}}))
    assert ufm.saved_data() == {}  # the default: nothing
    model = ufm_regression(samples=5, targets=2, dim=2, dtype=jnp.float64)
    data = results._model_data(model, {})
    assert list(data) == ["targets"] and data["targets"][1].shape == (5, 2)

    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)}

    def declaring(arrays):
        """The model with ``saved_data`` returning ``arrays``."""
        return type("Declaring", (type(model),), {"saved_data": lambda self: arrays})(**fields)

    labels = {"labels": (("sample",), np.zeros(5))}
    for arrays, message in (
        ({"targets": (("sample", "target"), np.zeros((4, 2)))}, "has 4 along 'sample', the .* 5"),
        ({"targets": (("sample",), np.zeros((5, 2)))}, "targets has 2 axes, 1 dim names"),
        (labels, "'labels' is already a results name"),
        ({"class": (("class",), np.zeros(2))}, "'class' is already a results name"),
    ):
        with pytest.raises(ValueError, match=message):
            results._model_data(declaring(arrays), labels)


def test_init_from_a_regression_results_file(written):
    ds, path = written
    again = simulation.simulate(_pipeline(WD, **{"from": str(path)}))
    for name in ("initial_W", "initial_H", "initial_b"):
        assert np.array_equal(again[name].values, ds[name].values), name
    assert np.abs(again.loss.values[:, -1] - ds.loss.values[:, -1]).max() < 1e-10
    assert np.array_equal(again["targets"].values, ds["targets"].values)


def test_the_figures_are_the_regression_collapse_against_the_closed_form(written, tmp_path):
    ds, path = written
    opt = theory.regression_optimum(saved_targets(ds), WD, WD)
    fig = plots.plot_trajectories(ds)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    titles = [ax.get_title() for ax in shown]
    assert [ax.get_ylabel() for ax in shown[1:5]] == ["NRC1", "NRC2", "NRC3", "train_mse"]
    assert [t.split(":")[0] for t in titles[1:4]] == ["NRC1", "NRC2", "NRC3"]
    assert titles[4].startswith("fit")
    assert not any("NC" in t.replace("NRC", "") or "ETF" in t for t in titles)
    fit_lines = [line.get_ydata()[0] for line in shown[4].lines if line.get_linestyle() == "--"]
    assert fit_lines == pytest.approx([opt.train_mse], rel=1e-12)  # the closed-form fit
    norm_lines = [line.get_ydata()[0] for line in shown[5].lines if line.get_linestyle() == "--"]
    assert norm_lines == pytest.approx([opt.W_norm_sq], rel=1e-12)
    suptitle = fig.get_suptitle()
    for part in ("ufm-regression", "N=20", "m=2", "d=3", "spectrum=[4, 1]", "wd_W=0.3"):
        assert part in suptitle, part
    plots.plt.close(fig)
    # the Gram target is the closed form's W W^T, through the spec's hook
    assert registry.spec("ufm-regression").gram is not None
    name, gram = plots.target_gram(ds)
    assert name == "closed form"
    assert np.abs(gram - opt.W_gram).max() < 1e-10
    fig = plots.plot_gram(ds)
    left, right = fig.axes[0], fig.axes[1]
    assert "closed form" in right.get_title()
    assert left.get_xlabel() == left.get_ylabel() == "target"
    assert np.abs(right.get_images()[0].get_array() - opt.W_gram).max() < 1e-10  # not rescaled
    plots.plt.close(fig)
    # gflow plot of the file: the trajectories and the Gram, no NC-only figure
    assert cli.main(["plot", str(path), "--out", str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == ["gram", "trajectories"]
    assert "NRC1, NRC2, NRC3 < 1e-3" in results.summary(ds)


def _with(**model):
    """The default ufm-regression config with ``model`` fields replaced, validated. (Set on the
    dataclass: a TOML list of floats such as target_spectrum is read by gflow.config only once
    it parses float lists.)"""
    base = config.from_dict({"model": {"name": "ufm-regression"}})
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, **model))
    config.validate(cfg)
    return cfg


@pytest.mark.parametrize(
    "model, message",
    [
        ({"target_spectrum": (4.0,)}, r"^model\.target_spectrum: needs one .*, got 1$"),
        ({"targets": 3}, r"^model\.target_spectrum: needs one eigenvalue per target \(3\), got 2"),
        ({"target_spectrum": (4.0, -1.0)}, r"^model\.target_spectrum\[1\]: must be > 0, got -1$"),
        ({"target_spectrum": (0.0, 1.0)}, r"^model\.target_spectrum\[0\]: must be > 0, got 0$"),
        ({"dim": 1}, r"^model\.dim: ufm-regression needs dim >= targets \(2\), got 1$"),
        ({"samples": 2}, r"^model\.samples: needs samples > targets \(2\)"),
        ({"target_seed": -1}, r"^model\.target_seed: must be >= 0, got -1$"),
        ({"targets": 0}, r"^model\.targets: must be >= 1, got 0$"),
        ({"wd_W": -0.1}, r"^model\.wd_W: must be >= 0"),
        ({"wd_b": 0.1}, r"^model\.wd_b: ufm-regression has wd_b fixed at 0\.0"),
        ({"classes": 3}, r"^model\.classes: ufm-regression has no option classes"),
    ],
)
def test_bad_inputs_get_the_one_line_config_error(model, message):
    with pytest.raises(ConfigError, match=message) as info:
        _with(**model)
    assert "\n" not in str(info.value)


def test_bad_inputs_from_toml_fields():
    with pytest.raises(ConfigError, match=r"^model\.dim: ufm-regression needs dim >= targets"):
        config.from_dict({"model": {"name": "ufm-regression", "targets": 2, "dim": 1}})
    with pytest.raises(ConfigError, match=r"^model\.target_spectrum: needs one eigenvalue"):
        config.from_dict({"model": {"name": "ufm-regression", "targets": 3}})

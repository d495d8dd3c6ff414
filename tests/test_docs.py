"""The models describe themselves: README's generated parts and the docs site's generated
pages match the declarations, and the declarations match the model pytrees (a structure option
changes the program, a hyperparameter only a leaf)."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from gflow import config, docs, simulation
from gflow.models import from_config, registry
from gflow.models.base import hyperparameters


def test_readme_holds_the_generated_text():
    text = docs.README.read_text()
    assert docs.render(text) == text, "README.md is stale: run `python -m gflow.docs`"


@pytest.fixture(scope="module")
def pages():
    return docs.site_pages()


def test_the_site_holds_the_generated_pages(pages):
    stale = [p.relative_to(docs.ROOT) for p, text in pages.items()
             if not p.is_file() or p.read_text() != text]  # fmt: skip
    assert not stale, f"{stale} stale: run `python -m gflow.docs`"
    assert not docs.stale_pages(pages), "generated pages without a source: `python -m gflow.docs`"


def test_every_page_is_in_the_nav_and_every_model_on_the_models_page(pages):
    yaml = pytest.importorskip("yaml")  # mkdocs's own dependency (the docs extra)
    site = yaml.safe_load((docs.ROOT / "mkdocs.yml").read_text())

    def paths(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from paths(value) if isinstance(value, list) else [value]

    in_nav = set(paths(site["nav"]))
    on_disk = {p.relative_to(docs.DOCS).as_posix() for p in docs.DOCS.rglob("*.md")}
    assert on_disk == in_nav
    models = pages[docs.DOCS / "models.md"]
    assert all(f"\n## `{name}`\n" in models for name in registry.MODEL_NAMES)
    notebooks = sorted(docs.NOTEBOOKS.glob("0*.py"))
    assert {f"notebooks/{py.stem}.md" for py in notebooks} <= in_nav


def test_every_module_has_an_api_page():
    import pkgutil

    import gflow

    modules = {m.name for m in pkgutil.walk_packages(gflow.__path__, "gflow.") if not m.ispkg}
    on_pages = {m for page in docs.api_modules().values() for m in page}
    assert modules - {"gflow.__main__"} <= on_pages


def test_a_notebook_page_embeds_the_figures_its_cells_save(pages):
    for py in sorted(docs.NOTEBOOKS.glob("0*.py")):
        saved = docs._SAVED.findall(py.read_text())
        assert saved, f"{py.name} saves no figure through gflow.plots.savefig"
        page = pages[docs.DOCS / "notebooks" / f"{py.stem}.md"]
        for name in saved:
            assert (docs.GALLERY / name).is_file(), f"notebooks/gallery/{name}: run `make gallery`"
            assert f"](gallery/{name})" in page


def test_docstring_markdown_keeps_formulas_and_code():
    text = docs.docstring_markdown(
        "The loss (:func:`gflow.theory.\n    seli`):\n    L = (1/N) sum_i CE(z_i, y_i)\n"
        "a_b * c with ``x_y``\n- a list"
    )
    assert text.splitlines() == [
        "The loss (`gflow.theory.seli`):", "", "    L = (1/N) sum_i CE(z_i, y_i)", "",
        "a\\_b \\* c with ``x_y``", "", "- a list",
    ]  # fmt: skip


def test_every_field_is_documented():
    options = docs._model_option_docs()
    for field in dataclasses.fields(config.ModelConfig):
        assert options[field.name]
    for section, cls in (("dynamics", config.DynamicsConfig), ("init", config.InitConfig),
                         ("run", config.RunConfig)):  # fmt: skip
        assert {f.name for f in dataclasses.fields(cls)} == set(config.DOCS[section])


def _changed(option, value):
    """Another valid value of an option (None where it has only one)."""
    if option.choices is not None:
        others = [c for c in option.choices if c != value]
        return others[0] if others else None
    if option.type == "bool":
        return not value
    if isinstance(value, tuple):
        return tuple(2 * v + 0.25 for v in value)
    if option.type.startswith("int"):
        return value + 1
    return 2 * value + 0.25


@pytest.mark.parametrize("name", registry.MODEL_NAMES)
def test_declared_roles_are_the_pytree_roles(name):
    """Changing a hyperparameter keeps the treedef (one compiled program) and changes that
    leaf; changing a structure option changes the treedef or the parameter shapes."""
    spec = registry.spec(name)
    sizes = {k: v for k, v in {"classes": 3, "per_class": 2}.items() if spec.option(k)}
    base = config.from_dict({"model": {"name": name, **sizes}}).model
    model = from_config(base, dtype=jnp.float64)
    assert set(spec.hyperparameters()) <= set(hyperparameters(model))
    for option in spec.options:
        value = _changed(option, getattr(base, option.name))
        if value is None or (option.name == "classifier" and value == "fixed-etf"):
            continue  # one data set; a frozen ETF needs dim >= K - 1 (tested in test_fixed_etf)
        changes = {option.name: value}
        if option.name == "classes" and spec.features_are_logits:
            changes["dim"] = value
        if name == "wide-net" and option.name == "classes":
            changes["width"] = base.width
        if name == "ufm-regression" and option.name == "targets":  # a spectrum of m values
            changes.update(target_spectrum=(*base.target_spectrum, 0.5), dim=max(base.dim, value))
        other = from_config(dataclasses.replace(base, **changes), dtype=jnp.float64)
        same_tree = jax.tree.structure(other) == jax.tree.structure(model)
        if option.structural:
            shapes = simulation.parameter_layout(other) != simulation.parameter_layout(model)
            assert not same_tree or shapes, f"{name}.{option.name} changes nothing structural"
        else:
            assert same_tree, f"{name}.{option.name} is declared a hyperparameter"
            assert hyperparameters(other)[option.name] == pytest.approx(value)


def test_structure_key_folds_exactly_the_hyperparameters():
    base = {"model": {"name": "ufm-ce"}, "dynamics": {"t1": 10.0}}
    key = simulation.structure_key(config.from_dict(base))
    hyper = config.from_dict({**base, "model": {"name": "ufm-ce", "wd_W": 0.1, "wd_b": 0.2}})
    assert simulation.structure_key(hyper) == key
    shape = config.from_dict({**base, "model": {"name": "ufm-ce", "classes": 5}})
    assert simulation.structure_key(shape) != key


def test_a_results_file_carries_the_declared_closed_form():
    from gflow import results, theory

    cfg = config.from_dict({"model": {"name": "ulpm", "classes": 3, "dim": 3, "per_class": 2,
                                      "wd_W": 5e-3, "wd_H": 5e-3}})  # fmt: skip
    model = simulation.build_model(cfg)
    attrs = results.theory_attrs(model, cfg)
    # the regularized ULPM's minimizer is the UFM-CE optimum (its bias is 0 there anyway)
    assert attrs["theory_W_norm_sq"] == pytest.approx(13.96536087360249, rel=1e-12)
    assert attrs["theory_W_norm_sq"] == theory.ufm_ce_optimum(3, 2, 5e-3, 5e-3).rho
    assert "simplex ETF" in attrs["theory_geometry"]
    unregularized = config.from_dict({"model": {"name": "ulpm", "classes": 4, "per_class": 5}})
    attrs = results.theory_attrs(simulation.build_model(unregularized), unregularized)
    assert attrs["theory_normalized_margin"] == pytest.approx(1 / (5**0.5 * 3), rel=1e-12)

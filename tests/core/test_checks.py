"""core.checks: the one place parameter checks live (pipeline settings, custom video, notebooks)."""
from __future__ import annotations

import pytest

from reface_utils.core.checks import choice, flag, integer, notebook_values, number, refuse_unknown, text


def test_values_are_checked_with_the_parameter_named():
    assert number("alpha", 1, 0.0, 1.0) == 1.0 and integer("topk", 3.0, 1) == 3 and flag("amp", False) is False
    assert text("dataset", "  ltcc ") == "ltcc" and choice("engine", "RAY", ["local", "ray"]) == "ray"
    for call, message in ((lambda: number("alpha", 1.5, 0.0, 1.0), "alpha must lie in"),
                          (lambda: number("alpha", True, 0.0, 1.0), "alpha must be a number"),
                          (lambda: integer("topk", 0, 1), "topk must be a whole number >= 1"),
                          (lambda: flag("amp", "yes"), "amp must be True or False, got 'yes'"),
                          (lambda: text("dataset", ""), "dataset must be a non-empty text"),
                          (lambda: choice("engine", "spark", ["local", "ray"]), "engine must be one of")):
        with pytest.raises(ValueError, match=message):
            call()


def test_unknown_names_are_refused_with_the_closest_known_one():
    refuse_unknown(["alpha"], ["alpha", "topk"])
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) 'aplha' \(did you mean 'alpha'\?\), 'zzz'; known: alpha, topk"):
        refuse_unknown(["aplha", "zzz"], ["alpha", "topk"])


def test_notebook_values_are_the_plain_public_names():
    namespace = {"alpha": 0.5, "dataset": "demo", "data_root": None, "k": 3, "np": pytest, "In": [], "_x": 1,
                 "REFACE_GIT": "url", "paths": [1, 2]}
    assert notebook_values(namespace, own=("k",)) == {"alpha": 0.5, "dataset": "demo", "data_root": None}


@pytest.mark.parametrize("register", ["face", "reid"])
@pytest.mark.parametrize("name, factory, error", [
    (None, lambda **kw: None, "name must be non-empty text, got None"),
    ("  ", lambda **kw: None, "name must be non-empty text"),
    (3, lambda **kw: None, "name must be non-empty text, got 3"),
    ("mine", "not a function", r"factory must be callable as .*got str"),
])
def test_model_registrations_refuse_a_bad_name_or_factory(register, name, factory, error):
    from reface_utils.models import face, reid

    available = face.available_face_models if register == "face" else reid.available_reid_models
    before = available()
    with pytest.raises(TypeError, match=error):
        (face.register_face_model if register == "face" else reid.register_reid_model)(name, factory)
    assert available() == before

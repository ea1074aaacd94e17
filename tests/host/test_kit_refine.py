"""The kit's refine registry: one listing, one validation (codes and detail keys) and one report for
every modality's refine operations."""

from __future__ import annotations

import pytest
from pydantic import Field

from lora_factory.kit import LoRAFactoryError
from lora_factory.kit.refine import Operation, OperationRegistry, RefineParams, RefineReport


class TrimParams(RefineParams):
    keep_ms: int = Field(80, ge=0, le=2000)


REGISTRY = OperationRegistry([
    Operation("trim", TrimParams, "前後の無音を削除", "Trim silence", extra={"uses_model": False}),
    Operation("noop", RefineParams, "何もしない", "Nothing", "説明", "Explained"),
], titles_ja={"keep_ms": "残す長さ (ms)"}, http_status=400)


def test_describe_lists_labels_schema_with_japanese_titles_and_extras():
    listing = REGISTRY.describe()
    assert list(listing) == ["trim", "noop"]
    assert listing["trim"]["label_en"] == "Trim silence" and listing["trim"]["uses_model"] is False
    assert listing["trim"]["params_schema"]["properties"]["keep_ms"]["title_ja"] == "残す長さ (ms)"
    assert "description_en" not in listing["trim"] and listing["noop"]["description_en"] == "Explained"


def test_validate_fills_defaults_and_refuses_with_one_shape():
    assert REGISTRY.validate_dicts([{"op": "trim"}, {"op": "noop", "params": {}}]) == [
        {"op": "trim", "params": {"keep_ms": 80}}, {"op": "noop", "params": {}}]
    for bad in (None, [], "trim"):
        with pytest.raises(LoRAFactoryError) as err:
            REGISTRY.validate(bad)
        assert err.value.code == "REFINE_INVALID_OPERATION" and err.value.http_status == 400
        assert err.value.detail["available"] == ["trim", "noop"]
    with pytest.raises(LoRAFactoryError) as err:
        REGISTRY.validate([{"op": "trim"}, {"op": "nope"}])
    assert err.value.code == "REFINE_INVALID_OPERATION"
    assert (err.value.detail["index"], err.value.detail["position"], err.value.detail["op"]) == (1, 2, "nope")
    with pytest.raises(LoRAFactoryError) as err:
        REGISTRY.validate([{"op": "trim", "params": {"keep_ms": -1}}])
    detail = err.value.detail
    assert err.value.code == "REFINE_INVALID_PARAMS" and err.value.http_status == 400
    assert (detail["index"], detail["op"], detail["field"], detail["value"]) == (0, "trim", "keep_ms", -1)
    assert detail["errors"][0]["field"] == "keep_ms" and "keep_ms" in err.value.message_en
    with pytest.raises(LoRAFactoryError) as err:
        REGISTRY.validate([{"op": "trim", "params": {"keep": 1}}])  # a typo is refused, not ignored
    assert err.value.code == "REFINE_INVALID_PARAMS" and err.value.detail["field"] == "keep"


def test_report_counts_caps_examples_and_merges():
    step = RefineReport(max_examples=2)
    for i in range(3):
        step.remove("too_short", {"i": i})
    step.change("normalized", {"i": 9}, count=4)
    assert step.removed == {"too_short": 3} and step.changed == {"normalized": 4}
    assert step.examples["too_short"] == [{"i": 0}, {"i": 1}]
    run = RefineReport(max_examples=3)
    run.remove("too_short", {"i": "a"})
    run.merge(step)
    assert run.removed == {"too_short": 4} and run.examples["too_short"] == [{"i": "a"}, {"i": 0}, {"i": 1}]

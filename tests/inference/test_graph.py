"""Reading operator types from ONNX files, compared with the `onnx` package's own reading."""

import onnx
import pytest
from onnx import TensorProto, helper

from modelops_inference.graph import CROSS_ROW_OPS, cross_row_ops, op_types

from . import models


def test_a_dynamically_quantized_model_is_found_to_compute_across_rows(tmp_path):
    path = models.quantized_mlp(tmp_path / "int8.onnx")
    assert op_types(path.read_bytes()) == {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= cross_row_ops(path)


def test_a_float_model_computes_each_row_on_its_own(mlp_path):
    assert op_types(mlp_path.read_bytes()) == {"MatMul", "Add", "Relu", "Softmax"}
    assert cross_row_ops(mlp_path) == set()


def test_operators_inside_subgraphs_count_too(tmp_path):
    """An If branch's body is a graph in a node attribute."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, ["batch", 2])
    branch = helper.make_graph([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])], "b", [], [y])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    model = helper.make_model(helper.make_graph([node], "g", [cond, x], [y]))
    assert "DynamicQuantizeLinear" in op_types(model.SerializeToString()) & CROSS_ROW_OPS


def test_bytes_that_are_not_a_model_are_refused():
    with pytest.raises((ValueError, IndexError)):
        op_types(b"\x07\x07\x07")

"""The CRD file is the API's source of truth: the operator's defaults must agree with it."""

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from modelops_inference.config import ServerConfig
from modelops_operator.spec import ModelDeploymentSpec

CRD = Path(__file__).parents[2] / "crds" / "modelops.io_modeldeployments.yaml"


def schema():
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return crd, version["schema"]["openAPIV3Schema"]


def pairs(model: type[BaseModel], props: dict, path: str):
    """(path, pydantic default, schema default) for every field both describe."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        prop = props.get(key)
        if prop is None:
            continue
        annotation = field.annotation
        nested = next((a for a in getattr(annotation, "__args__", (annotation,))
                       if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested and "properties" in prop:
            yield from pairs(nested, prop["properties"], f"{path}.{key}")
        elif "default" in prop and not field.is_required():
            yield f"{path}.{key}", field.get_default(call_default_factory=True), prop["default"]


def test_every_spec_field_the_operator_reads_exists_in_the_schema():
    _, root = schema()
    props = root["properties"]["spec"]["properties"]
    missing = [f.alias or n for n, f in ModelDeploymentSpec.model_fields.items() if (f.alias or n) not in props]
    assert missing == []


@pytest.mark.parametrize("path, ours, theirs", list(pairs(ModelDeploymentSpec, schema()[1]["properties"]["spec"]
                                                             ["properties"], "spec")))
def test_operator_defaults_equal_the_crd_defaults(path, ours, theirs):
    if isinstance(ours, BaseModel):
        ours = ours.model_dump(by_alias=True) if theirs else {}
    if isinstance(ours, list):  # a list of models (spec.rollout.canary.steps): as the API server stores them
        ours = [o.model_dump(by_alias=True, exclude_none=True) if isinstance(o, BaseModel) else o for o in ours]
    assert ours == theirs, f"{path}: operator default {ours!r} != CRD default {theirs!r}"


def test_crd_names_and_subresources():
    crd, _ = schema()
    assert crd["spec"]["group"] == "modelops.io"
    assert crd["spec"]["names"]["shortNames"] == ["mdep"]
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Model", "Version", "Phase", "Ready", "URL", "Age"]


# spec.serving fields the operator passes to modelops-serve, and the server option each becomes: a
# pod left to the server's default must behave as the CRD says it will.
SERVER_OPTIONS = {
    "threads": "intra_op_threads",
    "keepAliveSeconds": "keep_alive_seconds",
    "batching.enabled": "batching",
    "batching.maxBatchSize": "max_batch_size",
    "batching.maxDelayMs": "max_batch_delay_ms",
    "grpc.enabled": "grpc",
}


def crd_default(props: dict, dotted: str):
    *parents, leaf = dotted.split(".")
    for key in parents:
        props = props[key]["properties"]
    return props[leaf]["default"]


@pytest.mark.parametrize("field, option", SERVER_OPTIONS.items())
def test_the_servers_defaults_equal_the_crds_serving_defaults(field, option):
    serving = schema()[1]["properties"]["spec"]["properties"]["serving"]["properties"]
    ours = ServerConfig.__dataclass_fields__[option].default
    assert ours == crd_default(serving, field), f"modelops-serve {option}={ours!r} != CRD spec.serving.{field}"


def test_the_crd_reserves_exactly_the_env_names_the_operator_sets():
    import re

    from modelops_operator.manifests import RESERVED_ENV

    _, root = schema()
    env = root["properties"]["spec"]["properties"]["serving"]["properties"]["env"]
    (rule,) = env["x-kubernetes-validations"]
    assert set(re.findall(r"'([A-Z0-9_]+)'", rule["rule"])) == RESERVED_ENV
    assert set(re.findall(r"[A-Z][A-Z0-9_]+[A-Z0-9]", rule["message"])) == RESERVED_ENV
    assert env["x-kubernetes-list-type"] == "map" and env["x-kubernetes-list-map-keys"] == ["name"]

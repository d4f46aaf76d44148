"""The ModelDeployment spec as typed data.

The API server already applies the CRD's defaults and validation; these models repeat the defaults so
that pure functions (manifest builders, tests) can work from a partial spec too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class InvalidSpec(ValueError):
    """A spec the API server accepted but the operator cannot act on; the message names the field and the fix."""


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ModelRef(_Camel):
    name: str
    version: str | None = None
    alias: str | None = None
    tracking_uri: str | None = None
    credentials_secret: str | None = None

    @property
    def reference(self) -> str:
        """The MLflow URI the user asked for (alias form when tracking an alias)."""
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


class ExportSpec(_Camel):
    opset: int = 18
    quantize: Literal["none", "dynamic-int8"] = "none"
    tolerance: float = 1e-4
    resources: dict[str, Any] = Field(default_factory=lambda: {
        "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}})


class Batching(_Camel):
    enabled: bool = True
    max_batch_size: int = 32
    max_delay_ms: float = 2


class Grpc(_Camel):
    enabled: bool = True


class ServingSpec(_Camel):
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    resources: dict[str, Any] = Field(default_factory=dict)
    env: list[dict[str, Any]] = Field(default_factory=list)
    threads: int = 1
    keep_alive_seconds: int = 75
    batching: Batching = Field(default_factory=Batching)
    grpc: Grpc = Field(default_factory=Grpc)


class Autoscaling(_Camel):
    min_replicas: int = 1
    max_replicas: int
    target_cpu_utilization_percentage: int = Field(70, alias="targetCPUUtilizationPercentage")


class CanaryStep(_Camel):
    weight: int
    analysis_seconds: int | None = None
    pause_seconds: int | None = None

    @property
    def seconds(self) -> int:
        return self.analysis_seconds if self.analysis_seconds is not None else (self.pause_seconds or 0)


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(weight=w, analysis_seconds=30) for w in (10, 25, 50)]


class CanarySpec(_Camel):
    steps: list[CanaryStep] = Field(default_factory=_default_steps)


class RolloutSpec(_Camel):
    max_surge: int | str = 1
    max_unavailable: int | str = 0
    progress_deadline_seconds: int = 120
    strategy: Literal["rolling", "canary"] = "rolling"
    canary: CanarySpec = Field(default_factory=CanarySpec)


class SmokeSpec(_Camel):
    requests: list[dict[str, Any]] = Field(default_factory=list)
    expected_outputs: list[dict[str, Any]] = Field(default_factory=list)
    tolerance: float = 1e-3
    timeout_seconds: int = 10
    min_success_rate: float = 1.0


class RegistryGateSpec(_Camel):
    enabled: bool = True
    metric: str = "test_f1"
    max_regression: float = 0.05


class ReplaySpec(_Camel):
    enabled: bool = True
    production_sample: bool = True
    sample_rows: int = 256
    min_samples: int = 50
    max_flip_rate: float = 0.1
    max_mean_score_delta: float = 0.1
    max_score_psi: float = Field(1.0, alias="maxScorePSI")
    max_accuracy_drop: float = 0.03


class LiveSpec(_Camel):
    enabled: bool = True
    interval_seconds: int = 5
    max_duration_seconds: int = 300
    min_samples: int = 100
    max_error_rate_increase: float = 0.01
    max_latency_ratio: float = 1.5
    max_class_shift: float = 0.05
    max_score_ks: float = Field(0.1, alias="maxScoreKS")
    alpha: float = 0.05


class AnalysisSpec(_Camel):
    enabled: bool = True
    on_inconclusive: Literal["proceed", "hold", "reject"] = "hold"
    history_limit: int = 10
    registry: RegistryGateSpec = Field(default_factory=RegistryGateSpec)
    replay: ReplaySpec = Field(default_factory=ReplaySpec)
    live: LiveSpec = Field(default_factory=LiveSpec)


class IngressTLS(_Camel):
    secret_name: str | None = None


class IngressSpec(_Camel):
    host: str | None = None
    path: str = "/"
    class_name: str | None = None
    tls: IngressTLS | None = None


class ParentRef(_Camel):
    name: str
    namespace: str | None = None
    section_name: str | None = None


class GatewaySpec(_Camel):
    parent_refs: list[ParentRef] = Field(default_factory=list)
    hostnames: list[str] = Field(default_factory=list)
    path: str = "/"


class RetrainSpec(_Camel):
    """spec.retrain: the user's training Job, which the operator starts on a drift alert or a request."""

    template: dict[str, Any]
    cooldown_seconds: int = 3600
    max_concurrent: int = 1
    backoff_limit: int = 0
    active_deadline_seconds: int | None = None


class ModelDeploymentSpec(_Camel):
    model: ModelRef
    export: ExportSpec = Field(default_factory=ExportSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    replicas: int | None = None
    autoscaling: Autoscaling | None = None
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    smoke: SmokeSpec = Field(default_factory=SmokeSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    ingress: IngressSpec | None = None
    gateway: GatewaySpec | None = None
    retrain: RetrainSpec | None = None

    @property
    def canary(self) -> bool:
        return self.rollout.strategy == "canary"

    @property
    def desired_replicas(self) -> int:
        """Replicas the operator sets itself; with autoscaling the HPA owns the count."""
        if self.autoscaling:
            return self.autoscaling.min_replicas
        return 1 if self.replicas is None else self.replicas

"""What the operator needs of the registry (versions, aliases, runs, listing and fetching a run's
artifacts; and its few writes: a model version's tag, an artifact of a run), over
MLflow's REST API for an HTTP tracking server, else through MlflowClient.

Why not MlflowClient everywhere: `import mlflow` alone holds about 100 MiB of memory, and the
operator only ever reads a version, an alias and an export's export.json. Over the REST API (httpx,
which the operator has anyway) the operator never imports mlflow. Both readers answer with the same
small records and raise the same `RegistryAnswer` (MLflow said no, with its error code), so the
callers in client.py and record.py do not know which one they hold. MLflow's own environment
settings apply to both: MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN, and
MLFLOW_TRACKING_INSECURE_TLS / MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_HTTP_REQUEST_TIMEOUT.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from .errors import NOT_FOUND_CODES, RegistryAnswer


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    run_id: str | None
    source: str


@dataclass(frozen=True)
class Model:
    name: str
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version


@dataclass(frozen=True)
class Artifact:
    path: str
    is_dir: bool
    file_size: int | None


@dataclass(frozen=True)
class Run:
    run_id: str
    experiment_id: str
    artifact_uri: str
    metrics: dict[str, float] = field(default_factory=dict)  # the latest value of each metric
    tags: dict[str, str] = field(default_factory=dict)


PROXIED_SCHEME = "mlflow-artifacts"  # artifacts the tracking server stores for its clients (`mlflow server`'s default)


def _artifact_path(path: str) -> str:
    """A relative artifact path, refused when it would leave the run's artifact folder."""
    clean = posixpath.normpath(path.strip("/"))
    if not path.strip("/") or clean.startswith("..") or clean == ".":
        raise ValueError(f"artifact path {path!r} must be a relative path inside the run's artifacts")
    return clean


def _too_large(run_id: str, path: str, max_bytes: int) -> RegistryAnswer:
    return RegistryAnswer("TOO_LARGE", f"artifact {path} of run {run_id} is larger than {max_bytes} bytes")


def reader(tracking_uri: str | None):
    """The reader for a tracking URI: REST for http(s), MlflowClient for anything else (a file or
    database store, used by tests and local training)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if uri.startswith(("http://", "https://")):
        return RestReader(uri)
    return MlflowReader(tracking_uri)


def _version(d: dict) -> Version:
    return Version(d.get("name", ""), str(d.get("version", "")), d.get("run_id") or None, d.get("source", ""))


def _model(d: dict) -> Model:
    return Model(d.get("name", ""), {a["alias"]: str(a["version"]) for a in d.get("aliases") or [] if "alias" in a})


def _raise_for(resp, route: str) -> None:
    """MLflow's refusal as RegistryAnswer (its error code, else one from the HTTP status); a 5xx as
    ConnectionError, which client.is_unavailable retries. The body must already be read."""
    if resp.status_code >= 500:
        raise ConnectionError(f"MLflow answered HTTP {resp.status_code} to {route}")
    if resp.status_code >= 400:
        try:
            body = resp.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = body.get("error_code") or {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                                          404: "RESOURCE_DOES_NOT_EXIST"}.get(resp.status_code, "BAD_REQUEST")
        raise RegistryAnswer(code, body.get("message") or f"HTTP {resp.status_code} from {route}")


class RestReader:
    """MLflow's REST API over httpx. Transport errors propagate (client.is_unavailable knows them);
    an answer with an error becomes RegistryAnswer with MLflow's error code."""

    def __init__(self, tracking_uri: str):
        import httpx

        self.base = tracking_uri.rstrip("/")
        env = os.environ
        auth: Any = None
        headers = {}
        if env.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        elif env.get("MLFLOW_TRACKING_USERNAME"):
            auth = (env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", ""))
        verify: Any = True
        if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            verify = False
        elif env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            verify = env["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        timeout = float(env.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or 15)
        self._http = httpx.Client(auth=auth, headers=headers, verify=verify, timeout=timeout)

    def _call(self, method: str, route: str, **kw) -> Any:
        resp = self._http.request(method, f"{self.base}{route}", **kw)
        _raise_for(resp, route)
        return resp

    def _json(self, endpoint: str, **params) -> dict:
        return self._call("GET", f"/api/2.0/mlflow/{endpoint}", params=params).json()

    def get_model_version(self, name: str, version: str) -> Version:
        return _version(self._json("model-versions/get", name=name, version=version)["model_version"])

    def get_model_version_by_alias(self, name: str, alias: str) -> Version:
        return _version(self._json("registered-models/alias", name=name, alias=alias)["model_version"])

    def get_registered_model(self, name: str) -> Model:
        return _model(self._json("registered-models/get", name=name)["registered_model"])

    def search_model_versions(self, filter_string: str) -> list[Version]:
        out = self._json("model-versions/search", filter=filter_string, max_results=200)
        return [_version(v) for v in out.get("model_versions") or []]

    def search_registered_models(self, max_results: int = 20) -> list[Model]:
        out = self._json("registered-models/search", max_results=max_results)
        return [_model(m) for m in out.get("registered_models") or []]

    def list_artifacts(self, run_id: str, path: str) -> list[Artifact]:
        out = self._json("artifacts/list", run_id=run_id, path=path)
        return [Artifact(f["path"], bool(f.get("is_dir")), int(f["file_size"]) if "file_size" in f else None)
                for f in out.get("files") or []]

    def download_artifacts(self, run_id: str, path: str, dst: str) -> str:
        resp = self._call("GET", "/get-artifact", params={"run_id": run_id, "path": path})
        target = Path(dst) / Path(path).name
        target.write_bytes(resp.content)
        return str(target)

    def get_run(self, run_id: str) -> Run:
        run = self._json("runs/get", run_id=run_id)["run"]
        info, data = run.get("info") or {}, run.get("data") or {}
        return Run(info.get("run_id", run_id), str(info.get("experiment_id", "")), info.get("artifact_uri", ""),
                   {m["key"]: float(m["value"]) for m in data.get("metrics") or [] if "key" in m},
                   {t["key"]: t.get("value", "") for t in data.get("tags") or [] if "key" in t})

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        body = {"name": name, "version": str(version), "key": key, "value": value}
        self._call("POST", "/api/2.0/mlflow/model-versions/set-tag", json=body)

    def _proxied_route(self, run_id: str, path: str) -> str:
        """The tracking server's artifact route for `path` of a run whose artifacts it stores itself;
        RegistryAnswer UNSUPPORTED for any other store (this reader holds no S3/GCS/... client)."""
        uri = self.get_run(run_id).artifact_uri
        parsed = urlparse(uri)
        if parsed.scheme != PROXIED_SCHEME:
            raise RegistryAnswer(
                "UNSUPPORTED",
                f"run {run_id} stores its artifacts at {uri}: the operator can only upload through a proxied "
                f"artifact store ({PROXIED_SCHEME}:/, `mlflow server` with --serve-artifacts, its default)",
            )
        root = parsed.path.strip("/")
        return f"/api/2.0/mlflow-artifacts/artifacts/{quote(root)}/{quote(_artifact_path(path))}"

    def upload_artifact(self, run_id: str, path: str, data: bytes) -> None:
        self._call("PUT", self._proxied_route(run_id, path), content=data)

    def read_artifact(self, run_id: str, path: str, max_bytes: int) -> bytes | None:
        """The artifact's bytes, None when it does not exist; TOO_LARGE past `max_bytes`, read as a
        stream and abandoned at the limit, so a huge artifact never sits in memory."""
        route = "/get-artifact"
        params = {"run_id": run_id, "path": _artifact_path(path)}
        with self._http.stream("GET", f"{self.base}{route}", params=params) as resp:
            if resp.status_code >= 400:
                resp.read()  # an error answer is a short JSON body
                try:
                    _raise_for(resp, route)
                except RegistryAnswer as exc:
                    if exc.error_code in NOT_FOUND_CODES:
                        return None
                    raise
            size = resp.headers.get("content-length")
            if size and size.isdigit() and int(size) > max_bytes:
                raise _too_large(run_id, path, max_bytes)
            chunks, total = [], 0
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise _too_large(run_id, path, max_bytes)
                chunks.append(chunk)
        return b"".join(chunks)

    def export_run(self, experiment: str, tag: str, value: str) -> str | None:
        """The first run of `experiment` whose tag `tag` equals `value`, or None."""
        try:
            exp = self._json("experiments/get-by-name", experiment_name=experiment)["experiment"]
        except RegistryAnswer as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        body = {"experiment_ids": [exp["experiment_id"]], "filter": f"tags.`{tag}` = '{value}'", "max_results": 1}
        runs = self._call("POST", "/api/2.0/mlflow/runs/search", json=body).json().get("runs") or []
        return runs[0]["info"]["run_id"] if runs else None


class MlflowReader:
    """The same reads through MlflowClient, MLflow's refusals turned into RegistryAnswer."""

    def __init__(self, tracking_uri: str | None):
        from .client import client

        self._mc = client(tracking_uri)

    def _do(self, fn, *args, **kw):
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kw)
        except MlflowException as exc:
            raise RegistryAnswer(str(exc.error_code), exc.message) from exc

    def get_model_version(self, name: str, version: str) -> Version:
        mv = self._do(self._mc.get_model_version, name, version)
        return Version(mv.name, str(mv.version), mv.run_id or None, mv.source)

    def get_model_version_by_alias(self, name: str, alias: str) -> Version:
        mv = self._do(self._mc.get_model_version_by_alias, name, alias)
        return Version(mv.name, str(mv.version), mv.run_id or None, mv.source)

    def get_registered_model(self, name: str) -> Model:
        m = self._do(self._mc.get_registered_model, name)
        return Model(m.name, {k: str(v) for k, v in (m.aliases or {}).items()})

    def search_model_versions(self, filter_string: str) -> list[Version]:
        return [Version(v.name, str(v.version), v.run_id or None, v.source)
                for v in self._do(self._mc.search_model_versions, filter_string)]

    def search_registered_models(self, max_results: int = 20) -> list[Model]:
        return [Model(m.name, {k: str(v) for k, v in (m.aliases or {}).items()})
                for m in self._do(self._mc.search_registered_models, max_results=max_results)]

    def list_artifacts(self, run_id: str, path: str) -> list[Artifact]:
        return [Artifact(f.path, bool(f.is_dir), f.file_size) for f in self._do(self._mc.list_artifacts, run_id, path)]

    def download_artifacts(self, run_id: str, path: str, dst: str) -> str:
        return self._do(self._mc.download_artifacts, run_id, path, dst)

    def get_run(self, run_id: str) -> Run:
        run = self._do(self._mc.get_run, run_id)
        return Run(run.info.run_id, str(run.info.experiment_id), run.info.artifact_uri,
                   {k: float(v) for k, v in run.data.metrics.items()}, dict(run.data.tags))

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._do(self._mc.set_model_version_tag, name, str(version), key, value)

    def upload_artifact(self, run_id: str, path: str, data: bytes) -> None:
        clean = _artifact_path(path)
        folder, base = posixpath.split(clean)
        with tempfile.TemporaryDirectory(prefix="modelops-upload-") as tmp:
            (Path(tmp) / base).write_bytes(data)
            self._do(self._mc.log_artifact, run_id, str(Path(tmp) / base), folder or None)

    def read_artifact(self, run_id: str, path: str, max_bytes: int) -> bytes | None:
        """The artifact's bytes, None when it does not exist; TOO_LARGE past `max_bytes`, judged by
        the listed size before downloading (to a temporary file, then read up to the limit)."""
        clean = _artifact_path(path)
        listed = {f.path: f for f in self._listing(run_id, posixpath.dirname(clean))}
        entry = listed.get(clean)
        if entry is None or entry.is_dir:
            return None
        if entry.file_size is not None and entry.file_size > max_bytes:
            raise _too_large(run_id, path, max_bytes)
        with tempfile.TemporaryDirectory(prefix="modelops-read-") as tmp:
            local = self._do(self._mc.download_artifacts, run_id, clean, tmp)
            with open(local, "rb") as f:
                data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise _too_large(run_id, path, max_bytes)
        return data

    def _listing(self, run_id: str, folder: str) -> list[Artifact]:
        try:
            return self.list_artifacts(run_id, folder or None)
        except RegistryAnswer as exc:
            if exc.error_code in NOT_FOUND_CODES:
                return []
            raise

    def export_run(self, experiment: str, tag: str, value: str) -> str | None:
        exp = self._do(self._mc.get_experiment_by_name, experiment)
        if exp is None:
            return None
        runs = self._do(self._mc.search_runs, [exp.experiment_id], filter_string=f"tags.`{tag}` = '{value}'",
                        max_results=1)
        return runs[0].info.run_id if runs else None

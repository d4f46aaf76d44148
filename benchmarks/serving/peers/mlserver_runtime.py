"""A custom MLServer runtime serving an ONNX file with onnxruntime: what a Seldon user writes for a model
without a ready-made runtime (MLServer 1.7 ships none for ONNX). `model-settings.json` names it as
`"implementation": "mlserver_runtime.OnnxRuntime"` with the file in `parameters.uri`.

One onnxruntime thread, as modelops-serve runs by default; the model runs inline in `predict`, as
MLServer's own runtimes (sklearn, xgboost) do.
"""

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = await get_model_uri(self._settings, wellknown_filenames=["model.onnx"])
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self._session.run(None, feed)
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(name, r) for name, r in zip(self._outputs, results, strict=True)],
        )
